package sim

import (
	"strings"
)

// entry is a directory object: a user or a group.
type entry struct {
	u *user
	g *group
}

func (e entry) seq() uint64 {
	if e.u != nil {
		return e.u.seq
	}
	return e.g.seq
}

func (e entry) id() string {
	if e.u != nil {
		return e.u.id
	}
	return e.g.id
}

func (e entry) displayName() string {
	if e.u != nil {
		return e.u.displayName
	}
	return e.g.displayName
}

func (e entry) get(prop string) any {
	if e.u != nil {
		return userValue(e.u, canonUser[strings.ToLower(prop)])
	}
	return groupValue(e.g, canonGroup[strings.ToLower(prop)])
}

func (e entry) odataType() string {
	if e.u != nil {
		return "#microsoft.graph.user"
	}
	return "#microsoft.graph.group"
}

// userProps lists the user properties served, default set first in the order Graph writes it.
var userProps = []string{
	"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
	"preferredLanguage", "surname", "userPrincipalName", "id",
	"accountEnabled", "userType", "department", "companyName", "employeeId", "employeeType",
	"mailNickname", "onPremisesExtensionAttributes", "onPremisesSyncEnabled", "createdDateTime",
	"deletedDateTime", "proxyAddresses", "otherMails", "imAddresses", "showInAddressList",
	"usageLocation", "creationType", "externalUserState", "city", "country",
}

var defaultUserProps = userProps[:11]

var groupProps = []string{
	"id", "deletedDateTime", "classification", "createdDateTime", "description", "displayName",
	"expirationDateTime", "groupTypes", "isAssignableToRole", "mail", "mailEnabled", "mailNickname",
	"membershipRule", "membershipRuleProcessingState", "onPremisesLastSyncDateTime",
	"onPremisesSecurityIdentifier", "onPremisesSyncEnabled", "preferredDataLocation",
	"preferredLanguage", "proxyAddresses", "renewedDateTime", "resourceBehaviorOptions",
	"resourceProvisioningOptions", "securityEnabled", "theme", "visibility", "onPremisesProvisioningErrors",
}

var (
	canonUser  = canon(userProps)
	canonGroup = canon(groupProps)
	// filterable properties (graph-facts 2 and 4)
	userFilter  = set("id", "accountEnabled", "userType", "mail", "userPrincipalName", "displayName", "givenName", "surname", "jobTitle", "department", "companyName", "employeeId", "mobilePhone", "mailNickname", "proxyAddresses", "otherMails", "usageLocation", "creationType", "city", "country", "onPremisesSyncEnabled", "employeeType")
	groupFilter = set("id", "displayName", "mail", "mailEnabled", "securityEnabled", "groupTypes", "mailNickname", "proxyAddresses", "visibility", "onPremisesSyncEnabled", "isAssignableToRole", "createdDateTime")
	// single-GET-only user properties: selecting them on a list answers 501.
	singleOnly = set("aboutMe", "birthday", "hireDate", "interests", "mySite", "pastProjects", "preferredName", "responsibilities", "schools", "skills", "mailboxSettings")
)

// canon maps lower-case (and canonical) property names to canonical names.
func canon(props []string) map[string]string {
	m := make(map[string]string, 2*len(props))
	for _, p := range props {
		m[strings.ToLower(p)] = p
		m[p] = p
	}
	return m
}

// appendNStr writes s, or null when empty.
func appendNStr(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

// appendUserValue writes property p of u without building intermediate values for the
// hot properties (lists of 999 users).
func appendUserValue(b []byte, u *user, p string) []byte {
	switch p {
	case "id":
		return appendString(b, u.id)
	case "displayName":
		return appendNStr(b, u.displayName)
	case "givenName":
		return appendNStr(b, u.givenName)
	case "surname":
		return appendNStr(b, u.surname)
	case "mail":
		return appendNStr(b, u.mail)
	case "userPrincipalName":
		return appendString(b, u.upn)
	case "mobilePhone":
		return appendNStr(b, u.mobilePhone)
	case "jobTitle":
		return appendNStr(b, u.jobTitle)
	case "officeLocation":
		return appendNStr(b, u.office)
	case "preferredLanguage":
		return appendNStr(b, u.preferredLanguage)
	case "department":
		return appendNStr(b, u.department)
	case "employeeId":
		return appendNStr(b, u.employeeID)
	case "userType":
		return appendString(b, u.userType)
	case "accountEnabled":
		if u.accountEnabled {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case "businessPhones":
		return appendJSON(b, strs(u.businessPhones))
	case "onPremisesExtensionAttributes":
		b = append(b, '{')
		for i := range 15 {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, extNames[i]...)
			b = append(b, '"', ':')
			if u.ext != nil {
				b = appendNStr(b, u.ext[i])
			} else {
				b = append(b, "null"...)
			}
		}
		return append(b, '}')
	}
	return appendJSON(b, userValue(u, p))
}

func set(s ...string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, x := range s {
		m[strings.ToLower(x)] = true
	}
	return m
}

func userValue(u *user, p string) any {
	switch p {
	case "id":
		return u.id
	case "businessPhones":
		return strs(u.businessPhones)
	case "displayName":
		return nstr(u.displayName)
	case "givenName":
		return nstr(u.givenName)
	case "jobTitle":
		return nstr(u.jobTitle)
	case "mail":
		return nstr(u.mail)
	case "mobilePhone":
		return nstr(u.mobilePhone)
	case "officeLocation":
		return nstr(u.office)
	case "preferredLanguage":
		return nstr(u.preferredLanguage)
	case "surname":
		return nstr(u.surname)
	case "userPrincipalName":
		return u.upn
	case "accountEnabled":
		return u.accountEnabled
	case "userType":
		return u.userType
	case "department":
		return nstr(u.department)
	case "companyName":
		return nstr(u.companyName)
	case "employeeId":
		return nstr(u.employeeID)
	case "employeeType":
		return nstr(u.employeeType)
	case "mailNickname":
		return nstr(u.nick)
	case "onPremisesExtensionAttributes":
		o := make(obj, 15)
		for i := range 15 {
			var v any
			if u.ext != nil && u.ext[i] != "" {
				v = u.ext[i]
			}
			o[i] = kv{extNames[i], v}
		}
		return o
	case "onPremisesSyncEnabled":
		return nil
	case "createdDateTime":
		return graphTime(unix(u.created))
	case "deletedDateTime":
		if u.deleted {
			return graphTime(unix(u.deletedAt))
		}
		return nil
	case "proxyAddresses":
		if u.mail != "" && u.userType == "Member" {
			return []string{"SMTP:" + u.mail}
		}
		return []string{}
	case "otherMails", "imAddresses":
		return []string{}
	case "showInAddressList":
		return nil
	case "usageLocation":
		return nil
	case "creationType":
		if u.userType == "Guest" {
			return "Invitation"
		}
		return nil
	case "externalUserState":
		if u.userType == "Guest" {
			return "Accepted"
		}
		return nil
	case "city", "country":
		return nil
	}
	return nil
}

var extNames = func() []string {
	out := make([]string, 15)
	for i := range out {
		out[i] = "extensionAttribute" + itoa(i+1)
	}
	return out
}()

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func groupValue(g *group, p string) any {
	switch p {
	case "id":
		return g.id
	case "deletedDateTime":
		if g.deleted {
			return graphTime(unix(g.deletedAt))
		}
		return nil
	case "createdDateTime", "renewedDateTime":
		return graphTime(unix(g.created))
	case "description":
		return nstr(g.description)
	case "displayName":
		return nstr(g.displayName)
	case "groupTypes":
		return strs(g.groupTypes)
	case "mail":
		return nstr(g.mail)
	case "mailEnabled":
		return g.mailEnabled
	case "mailNickname":
		return g.nick
	case "securityEnabled":
		return g.securityEnabled
	case "visibility":
		return nstr(g.visib)
	case "proxyAddresses":
		if g.mail != "" {
			return []string{"SMTP:" + g.mail}
		}
		return []string{}
	case "resourceBehaviorOptions", "resourceProvisioningOptions", "onPremisesProvisioningErrors":
		return []string{}
	case "isAssignableToRole", "classification", "expirationDateTime", "membershipRule",
		"membershipRuleProcessingState", "onPremisesLastSyncDateTime", "onPremisesSecurityIdentifier",
		"onPremisesSyncEnabled", "preferredDataLocation", "preferredLanguage", "theme":
		return nil
	}
	return nil
}

// appendEntry writes e as a JSON object with props (canonical names of e's type; names the
// type lacks are skipped). withType adds @odata.type first.
func appendEntry(b []byte, e entry, props []string, withType bool) []byte {
	b = append(b, '{')
	first := true
	if withType {
		b = append(b, `"@odata.type":`...)
		b = appendString(b, e.odataType())
		first = false
	}
	for _, p := range props {
		var v any
		if e.u != nil {
			c, ok := canonUser[p]
			if !ok {
				if c, ok = canonUser[strings.ToLower(p)]; !ok {
					continue
				}
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendString(b, c)
			b = append(b, ':')
			b = appendUserValue(b, e.u, c)
			continue
		} else {
			c, ok := canonGroup[strings.ToLower(p)]
			if !ok {
				continue
			}
			v = groupValue(e.g, c)
			p = c
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, p)
		b = append(b, ':')
		b = appendJSON(b, v)
	}
	return append(b, '}')
}
