package graph

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strings"
)

func contactsPath(userID, folderID string) string {
	p := "/users/" + pathEscape(userID)
	if folderID != "" {
		return p + "/contactFolders/" + pathEscape(folderID) + "/contacts"
	}
	return p + "/contacts"
}

// ListContacts iterates a mailbox's contacts: the default Contacts folder when folderID
// is "", else that folder. Works for shared mailboxes too (userID is the mailbox's id or
// UPN) with the application permission Contacts.Read.
func (c *Client) ListContacts(ctx context.Context, userID, folderID string, opt ListOptions) iter.Seq2[Contact, error] {
	return List[Contact](ctx, c, contactsPath(userID, folderID), opt)
}

// ListContactFolders iterates the folders under the mailbox's default Contacts folder,
// or the child folders of parentFolderID when it is set.
func (c *Client) ListContactFolders(ctx context.Context, userID, parentFolderID string, opt ListOptions) iter.Seq2[ContactFolder, error] {
	p := "/users/" + pathEscape(userID) + "/contactFolders"
	if parentFolderID != "" {
		p += "/" + pathEscape(parentFolderID) + "/childFolders"
	}
	return List[ContactFolder](ctx, c, p, opt)
}

// ContactsDelta runs one contacts delta round for one folder of one mailbox (see Delta).
// folderID "" uses /users/{id}/contacts/delta (the default folder). sel (first call only)
// may be nil. opts may carry WithMaxPageSize.
func (c *Client) ContactsDelta(ctx context.Context, userID, folderID, link string, sel []string, fn func(DeltaPage[Contact]) error, opts ...RequestOption) (string, error) {
	if userID == "" && link == "" {
		return "", errors.New("graph: ContactsDelta needs a user id")
	}
	q := url.Values{}
	if len(sel) > 0 {
		q.Set("$select", strings.Join(sel, ","))
	}
	return Delta(ctx, c, contactsPath(userID, folderID)+"/delta", q, link, fn, opts...)
}

// MailboxPurpose returns mailboxSettings.userPurpose of a mailbox ("user", "shared",
// "room", "equipment", "linked", "others"). Needs MailboxSettings.Read.
func (c *Client) MailboxPurpose(ctx context.Context, userID string) (string, error) {
	var out struct {
		UserPurpose string `json:"userPurpose"`
	}
	err := c.Do(ctx, http.MethodGet, "/users/"+pathEscape(userID)+"/mailboxSettings", nil, nil, &out)
	return out.UserPurpose, err
}
