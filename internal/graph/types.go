package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// DateTime is a lenient Edm.DateTimeOffset: it accepts RFC 3339 (any number of
// fractional digits), "2006-01-02 15:04:05Z", a bare date, null, and placeholder text
// such as "datetime-value" (Time stays zero, Raw keeps the text). It never fails to decode
// a JSON string.
type DateTime struct {
	Time time.Time
	Raw  string // the text as received
}

var dateLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05Z", "2006-01-02"}

// ParseDateTime parses s leniently (see DateTime).
func ParseDateTime(s string) DateTime {
	d := DateTime{Raw: s}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			d.Time = t
			break
		}
	}
	return d
}

// NewDateTime wraps t (sent as RFC 3339 in UTC).
func NewDateTime(t time.Time) DateTime { return DateTime{Time: t} }

// IsZero reports whether no valid time was received.
func (d DateTime) IsZero() bool { return d.Time.IsZero() }

func (d DateTime) String() string {
	if !d.Time.IsZero() {
		return d.Time.UTC().Format(time.RFC3339Nano)
	}
	return d.Raw
}

func (d *DateTime) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*d = DateTime{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		*d = DateTime{Raw: string(b)}
		return nil
	}
	*d = ParseDateTime(s)
	return nil
}

func (d DateTime) MarshalJSON() ([]byte, error) {
	if d.Time.IsZero() && d.Raw == "" {
		return []byte("null"), nil
	}
	return json.Marshal(d.String())
}

// Removed is the @removed annotation of a delta item: Reason "changed" (soft-deleted,
// restorable) or "deleted" (gone for good).
type Removed struct {
	Reason string `json:"reason"`
}

// Removal reasons.
const (
	RemovedChanged = "changed"
	RemovedDeleted = "deleted"
)

// OnPremisesExtensionAttributes are Exchange custom attributes 1-15.
type OnPremisesExtensionAttributes struct {
	ExtensionAttribute1  string `json:"extensionAttribute1,omitempty"`
	ExtensionAttribute2  string `json:"extensionAttribute2,omitempty"`
	ExtensionAttribute3  string `json:"extensionAttribute3,omitempty"`
	ExtensionAttribute4  string `json:"extensionAttribute4,omitempty"`
	ExtensionAttribute5  string `json:"extensionAttribute5,omitempty"`
	ExtensionAttribute6  string `json:"extensionAttribute6,omitempty"`
	ExtensionAttribute7  string `json:"extensionAttribute7,omitempty"`
	ExtensionAttribute8  string `json:"extensionAttribute8,omitempty"`
	ExtensionAttribute9  string `json:"extensionAttribute9,omitempty"`
	ExtensionAttribute10 string `json:"extensionAttribute10,omitempty"`
	ExtensionAttribute11 string `json:"extensionAttribute11,omitempty"`
	ExtensionAttribute12 string `json:"extensionAttribute12,omitempty"`
	ExtensionAttribute13 string `json:"extensionAttribute13,omitempty"`
	ExtensionAttribute14 string `json:"extensionAttribute14,omitempty"`
	ExtensionAttribute15 string `json:"extensionAttribute15,omitempty"`
}

// Get returns extensionAttribute n (1-15).
func (a *OnPremisesExtensionAttributes) Get(n int) string {
	if p := a.attr(n); p != nil {
		return *p
	}
	return ""
}

// attr returns the field of extensionAttribute n (1-15), or nil.
func (a *OnPremisesExtensionAttributes) attr(n int) *string {
	if a == nil {
		return nil
	}
	switch n {
	case 1:
		return &a.ExtensionAttribute1
	case 2:
		return &a.ExtensionAttribute2
	case 3:
		return &a.ExtensionAttribute3
	case 4:
		return &a.ExtensionAttribute4
	case 5:
		return &a.ExtensionAttribute5
	case 6:
		return &a.ExtensionAttribute6
	case 7:
		return &a.ExtensionAttribute7
	case 8:
		return &a.ExtensionAttribute8
	case 9:
		return &a.ExtensionAttribute9
	case 10:
		return &a.ExtensionAttribute10
	case 11:
		return &a.ExtensionAttribute11
	case 12:
		return &a.ExtensionAttribute12
	case 13:
		return &a.ExtensionAttribute13
	case 14:
		return &a.ExtensionAttribute14
	case 15:
		return &a.ExtensionAttribute15
	}
	return nil
}

// UserSelect is the $select the sync needs for users (delta and list).
var UserSelect = []string{
	"id", "displayName", "givenName", "surname", "mail", "userPrincipalName", "mobilePhone",
	"businessPhones", "jobTitle", "department", "officeLocation", "companyName", "employeeId",
	"userType", "accountEnabled", "onPremisesExtensionAttributes",
}

// User is a Graph user. Properties not modelled here stay reachable through Property
// and RawProperty, because the raw JSON of the object is kept.
type User struct {
	ID                            string                         `json:"id,omitempty"`
	DisplayName                   string                         `json:"displayName,omitempty"`
	GivenName                     string                         `json:"givenName,omitempty"`
	Surname                       string                         `json:"surname,omitempty"`
	Mail                          string                         `json:"mail,omitempty"`
	UserPrincipalName             string                         `json:"userPrincipalName,omitempty"`
	MobilePhone                   string                         `json:"mobilePhone,omitempty"`
	BusinessPhones                []string                       `json:"businessPhones,omitempty"`
	JobTitle                      string                         `json:"jobTitle,omitempty"`
	Department                    string                         `json:"department,omitempty"`
	OfficeLocation                string                         `json:"officeLocation,omitempty"`
	CompanyName                   string                         `json:"companyName,omitempty"`
	EmployeeID                    string                         `json:"employeeId,omitempty"`
	UserType                      string                         `json:"userType,omitempty"` // Member | Guest
	AccountEnabled                *bool                          `json:"accountEnabled,omitempty"`
	OnPremisesExtensionAttributes *OnPremisesExtensionAttributes `json:"onPremisesExtensionAttributes,omitempty"`
	ODataType                     string                         `json:"@odata.type,omitempty"`
	Removed                       *Removed                       `json:"@removed,omitempty"`

	raw json.RawMessage
}

// IsRemoved reports whether this is a delta removal (soft or hard).
func (u User) IsRemoved() bool { return u.Removed != nil }

// Enabled reports accountEnabled, treating "not returned" as enabled.
func (u User) Enabled() bool { return u.AccountEnabled == nil || *u.AccountEnabled }

// IsGuest reports userType Guest.
func (u User) IsGuest() bool { return strings.EqualFold(u.UserType, "Guest") }

// BusinessPhone returns the first business phone, or "".
func (u User) BusinessPhone() string {
	if len(u.BusinessPhones) > 0 {
		return u.BusinessPhones[0]
	}
	return ""
}

// Raw returns the JSON the user was decoded from (nil for users built in code).
func (u User) Raw() json.RawMessage { return u.raw }

// UnmarshalJSON decodes tolerantly: a property of an unexpected JSON type is skipped
// instead of failing the whole page. The raw object is kept for Property.
func (u *User) UnmarshalJSON(b []byte) error {
	type plain User
	var p plain
	if err := json.Unmarshal(b, &p); err != nil && !isTypeError(err) {
		return err
	}
	p.raw = append(json.RawMessage(nil), b...)
	*u = User(p)
	return nil
}

// MarshalJSON encodes the modelled fields (the raw JSON is not re-emitted).
func (u User) MarshalJSON() ([]byte, error) {
	type plain User
	return json.Marshal(plain(u))
}

func isTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}

// Property returns a user property as text, by its Graph name, so that the product can
// map any property: "department", "employeeId", "extensionAttribute7",
// "onPremisesExtensionAttributes.extensionAttribute7", "businessPhones" (the first),
// "accountEnabled" ("true"/"false"), a directory or schema extension name, or a dotted
// path into an object ("ext55gb1l09_msLearnCourses.courseName"). Names match case-
// insensitively. ok is false when the property is absent or null.
func (u User) Property(name string) (string, bool) {
	switch strings.ToLower(name) {
	case "id":
		return u.ID, u.ID != ""
	case "displayname":
		return u.DisplayName, u.DisplayName != ""
	case "givenname":
		return u.GivenName, u.GivenName != ""
	case "surname":
		return u.Surname, u.Surname != ""
	case "mail":
		return u.Mail, u.Mail != ""
	case "userprincipalname":
		return u.UserPrincipalName, u.UserPrincipalName != ""
	case "mobilephone":
		return u.MobilePhone, u.MobilePhone != ""
	case "businessphones", "businessphone":
		return u.BusinessPhone(), len(u.BusinessPhones) > 0
	case "jobtitle":
		return u.JobTitle, u.JobTitle != ""
	case "department":
		return u.Department, u.Department != ""
	case "officelocation":
		return u.OfficeLocation, u.OfficeLocation != ""
	case "companyname":
		return u.CompanyName, u.CompanyName != ""
	case "employeeid":
		return u.EmployeeID, u.EmployeeID != ""
	case "usertype":
		return u.UserType, u.UserType != ""
	case "accountenabled":
		if u.AccountEnabled == nil {
			return "", false
		}
		return strconv.FormatBool(*u.AccountEnabled), true
	}
	lname := strings.ToLower(name)
	lname = strings.TrimPrefix(lname, "onpremisesextensionattributes.")
	if n, ok := strings.CutPrefix(lname, "extensionattribute"); ok {
		if i, err := strconv.Atoi(n); err == nil && i >= 1 && i <= 15 {
			v := u.OnPremisesExtensionAttributes.Get(i)
			return v, v != ""
		}
	}
	raw, ok := u.RawProperty(name)
	if !ok {
		return "", false
	}
	return rawText(raw)
}

// RawProperty returns the raw JSON of a property (dotted paths descend into objects).
func (u User) RawProperty(name string) (json.RawMessage, bool) {
	return lookupRaw(u.raw, name)
}

func lookupRaw(raw json.RawMessage, name string) (json.RawMessage, bool) {
	if len(raw) == 0 || name == "" {
		return nil, false
	}
	cur := raw
	for part := range strings.SplitSeq(name, ".") {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(cur, &m); err != nil {
			return nil, false
		}
		v, ok := m[part]
		if !ok {
			for k, vv := range m {
				if strings.EqualFold(k, part) {
					v, ok = vv, true
					break
				}
			}
		}
		if !ok {
			return nil, false
		}
		cur = v
	}
	if bytes.Equal(bytes.TrimSpace(cur), []byte("null")) {
		return nil, false
	}
	return cur, true
}

// rawText renders a JSON scalar as text; arrays give their first element.
func rawText(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, s != ""
	case '[':
		var a []json.RawMessage
		if err := json.Unmarshal(raw, &a); err != nil || len(a) == 0 {
			return "", false
		}
		return rawText(a[0])
	case '{':
		return string(raw), true
	case 'n':
		return "", false
	}
	return string(raw), true
}

// GroupSelect is the $select the sync needs for groups (add "members" for delta).
var GroupSelect = []string{
	"id", "displayName", "description", "mail", "mailNickname", "mailEnabled",
	"securityEnabled", "groupTypes",
}

// Group is a Graph group.
type Group struct {
	ID              string      `json:"id,omitempty"`
	DisplayName     string      `json:"displayName,omitempty"`
	Description     string      `json:"description,omitempty"`
	Mail            string      `json:"mail,omitempty"`
	MailNickname    string      `json:"mailNickname,omitempty"`
	MailEnabled     *bool       `json:"mailEnabled,omitempty"`
	SecurityEnabled *bool       `json:"securityEnabled,omitempty"`
	GroupTypes      []string    `json:"groupTypes,omitempty"`
	MembershipRule  string      `json:"membershipRule,omitempty"`
	Visibility      string      `json:"visibility,omitempty"`
	CreatedDateTime DateTime    `json:"createdDateTime,omitzero"`
	Members         []MemberRef `json:"members,omitempty"` // with $expand=members
	// MembersDelta is members@delta: additions, and removals with Removed set. A large
	// group's members arrive in slices over several pages; merge by group id.
	MembersDelta []MemberRef `json:"members@delta,omitempty"`
	Removed      *Removed    `json:"@removed,omitempty"`
}

// UnmarshalJSON decodes tolerantly (see User.UnmarshalJSON).
func (g *Group) UnmarshalJSON(b []byte) error {
	type plain Group
	var p plain
	if err := json.Unmarshal(b, &p); err != nil && !isTypeError(err) {
		return err
	}
	*g = Group(p)
	return nil
}

// IsRemoved reports whether this is a delta removal.
func (g Group) IsRemoved() bool { return g.Removed != nil }

// IsUnified reports a Microsoft 365 group (groupTypes contains "Unified").
func (g Group) IsUnified() bool { return hasFold(g.GroupTypes, "Unified") }

// IsDynamic reports rule-based membership.
func (g Group) IsDynamic() bool { return hasFold(g.GroupTypes, "DynamicMembership") }

// IsSecurity reports a security group that is not a Microsoft 365 group.
func (g Group) IsSecurity() bool {
	return g.SecurityEnabled != nil && *g.SecurityEnabled && !g.IsUnified()
}

func hasFold(ss []string, s string) bool {
	for _, v := range ss {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// MemberRef is a member reference in members@delta or an expanded members list.
type MemberRef struct {
	ODataType string   `json:"@odata.type,omitempty"` // "#microsoft.graph.user", "#microsoft.graph.group", ...
	ID        string   `json:"id"`
	Removed   *Removed `json:"@removed,omitempty"`
}

// IsUser reports an @odata.type of user (or no type at all).
func (m MemberRef) IsUser() bool {
	return m.ODataType == "" || strings.EqualFold(m.ODataType, "#microsoft.graph.user")
}

// DirectoryObject is a member of a group: a user, group, orgContact, device or
// service principal, told apart by ODataType.
type DirectoryObject struct {
	ODataType         string `json:"@odata.type,omitempty"`
	ID                string `json:"id,omitempty"`
	DisplayName       string `json:"displayName,omitempty"`
	Mail              string `json:"mail,omitempty"`
	UserPrincipalName string `json:"userPrincipalName,omitempty"`

	raw json.RawMessage
}

// UnmarshalJSON keeps the raw object so that AsUser can decode all user fields.
func (d *DirectoryObject) UnmarshalJSON(b []byte) error {
	type plain DirectoryObject
	var p plain
	if err := json.Unmarshal(b, &p); err != nil && !isTypeError(err) {
		return err
	}
	p.raw = append(json.RawMessage(nil), b...)
	*d = DirectoryObject(p)
	return nil
}

// IsUser reports a user member (#microsoft.graph.user). Objects without @odata.type
// (as in some documented samples) are reported as users only if they have a UPN.
func (d DirectoryObject) IsUser() bool {
	if d.ODataType == "" {
		return d.UserPrincipalName != ""
	}
	return strings.EqualFold(d.ODataType, "#microsoft.graph.user")
}

// IsGroup reports a nested group member.
func (d DirectoryObject) IsGroup() bool {
	return strings.EqualFold(d.ODataType, "#microsoft.graph.group")
}

// AsUser decodes the member as a User.
func (d DirectoryObject) AsUser() (User, error) {
	var u User
	if len(d.raw) == 0 {
		return User{ID: d.ID, DisplayName: d.DisplayName, Mail: d.Mail, UserPrincipalName: d.UserPrincipalName, ODataType: d.ODataType}, nil
	}
	err := json.Unmarshal(d.raw, &u)
	return u, err
}

// EmailAddress is an Outlook email address.
type EmailAddress struct {
	Name    string `json:"name,omitempty"`
	Address string `json:"address,omitempty"`
}

// PhysicalAddress is an Outlook postal address.
type PhysicalAddress struct {
	Street          string `json:"street,omitempty"`
	City            string `json:"city,omitempty"`
	State           string `json:"state,omitempty"`
	CountryOrRegion string `json:"countryOrRegion,omitempty"`
	PostalCode      string `json:"postalCode,omitempty"`
}

// Contact is an Outlook personal contact.
type Contact struct {
	ODataType            string           `json:"@odata.type,omitempty"`
	ID                   string           `json:"id,omitempty"`
	ParentFolderID       string           `json:"parentFolderId,omitempty"`
	ChangeKey            string           `json:"changeKey,omitempty"`
	DisplayName          string           `json:"displayName,omitempty"`
	GivenName            string           `json:"givenName,omitempty"`
	MiddleName           string           `json:"middleName,omitempty"`
	Surname              string           `json:"surname,omitempty"`
	NickName             string           `json:"nickName,omitempty"`
	Initials             string           `json:"initials,omitempty"`
	Title                string           `json:"title,omitempty"`
	FileAs               string           `json:"fileAs,omitempty"`
	CompanyName          string           `json:"companyName,omitempty"`
	Department           string           `json:"department,omitempty"`
	JobTitle             string           `json:"jobTitle,omitempty"`
	OfficeLocation       string           `json:"officeLocation,omitempty"`
	MobilePhone          string           `json:"mobilePhone,omitempty"`
	HomePhones           []string         `json:"homePhones,omitempty"`
	BusinessPhones       []string         `json:"businessPhones,omitempty"`
	EmailAddresses       []EmailAddress   `json:"emailAddresses,omitempty"`
	BusinessAddress      *PhysicalAddress `json:"businessAddress,omitempty"`
	HomeAddress          *PhysicalAddress `json:"homeAddress,omitempty"`
	Categories           []string         `json:"categories,omitempty"`
	PersonalNotes        string           `json:"personalNotes,omitempty"`
	Birthday             DateTime         `json:"birthday,omitzero"`
	CreatedDateTime      DateTime         `json:"createdDateTime,omitzero"`
	LastModifiedDateTime DateTime         `json:"lastModifiedDateTime,omitzero"`
	Removed              *Removed         `json:"@removed,omitempty"`
}

// UnmarshalJSON decodes tolerantly (see User.UnmarshalJSON).
func (c *Contact) UnmarshalJSON(b []byte) error {
	type plain Contact
	var p plain
	if err := json.Unmarshal(b, &p); err != nil && !isTypeError(err) {
		return err
	}
	*c = Contact(p)
	return nil
}

// IsRemoved reports a delta removal.
func (c Contact) IsRemoved() bool { return c.Removed != nil }

// PrimaryEmail returns the first email address, or "".
func (c Contact) PrimaryEmail() string {
	for _, e := range c.EmailAddresses {
		if e.Address != "" {
			return e.Address
		}
	}
	return ""
}

// ContactFolder is an Outlook contact folder.
type ContactFolder struct {
	ID             string   `json:"id,omitempty"`
	DisplayName    string   `json:"displayName,omitempty"`
	ParentFolderID string   `json:"parentFolderId,omitempty"`
	Removed        *Removed `json:"@removed,omitempty"`
}

// Presence is a user's Teams presence. Availability and Activity are kept as sent;
// compare them case-insensitively (docs disagree on casing) and accept unknown values.
type Presence struct {
	ID                  string               `json:"id,omitempty"`
	Availability        string               `json:"availability,omitempty"`
	Activity            string               `json:"activity,omitempty"`
	SequenceNumber      string               `json:"sequenceNumber,omitempty"`
	StatusMessage       json.RawMessage      `json:"statusMessage,omitempty"`
	OutOfOfficeSettings *OutOfOfficeSettings `json:"outOfOfficeSettings,omitempty"`
	ODataType           string               `json:"@odata.type,omitempty"`
	ODataID             string               `json:"@odata.id,omitempty"`
}

// OutOfOfficeSettings of a presence.
type OutOfOfficeSettings struct {
	Message       *string `json:"message"`
	IsOutOfOffice bool    `json:"isOutOfOffice"`
}

// UnmarshalJSON decodes tolerantly.
func (p *Presence) UnmarshalJSON(b []byte) error {
	type plain Presence
	var q plain
	if err := json.Unmarshal(b, &q); err != nil && !isTypeError(err) {
		return err
	}
	*p = Presence(q)
	return nil
}

// Subscription is a change-notification subscription.
type Subscription struct {
	ID                        string   `json:"id,omitempty"`
	Resource                  string   `json:"resource,omitempty"`
	ChangeType                string   `json:"changeType,omitempty"` // "updated,deleted"
	ClientState               string   `json:"clientState,omitempty"`
	NotificationURL           string   `json:"notificationUrl,omitempty"`
	LifecycleNotificationURL  string   `json:"lifecycleNotificationUrl,omitempty"`
	ExpirationDateTime        DateTime `json:"expirationDateTime,omitzero"`
	ApplicationID             string   `json:"applicationId,omitempty"`
	CreatorID                 string   `json:"creatorId,omitempty"`
	LatestSupportedTLSVersion string   `json:"latestSupportedTlsVersion,omitempty"`
	IncludeResourceData       bool     `json:"includeResourceData,omitempty"`
	EncryptionCertificate     string   `json:"encryptionCertificate,omitempty"`
	EncryptionCertificateID   string   `json:"encryptionCertificateId,omitempty"`
	NotificationContentType   string   `json:"notificationContentType,omitempty"`
}
