package contactsync

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/switchboard-pbx/switchboard/internal/graph"
)

// Mailbox is a shared mailbox of the tenant (the picker of
// sharedMailboxes.mailboxes).
type Mailbox struct {
	ID                string `json:"id"`
	DisplayName       string `json:"displayName"`
	UserPrincipalName string `json:"userPrincipalName"`
	Mail              string `json:"mail,omitempty"`
}

func (m Mailbox) label() string {
	if m.UserPrincipalName != "" {
		return m.DisplayName + " <" + m.UserPrincipalName + ">"
	}
	return m.DisplayName
}

// SharedMailboxes lists the tenant's shared mailboxes. Graph has no list of
// shared mailboxes (graph-facts 5): a shared mailbox is a user whose
// mailboxSettings.userPurpose is "shared", and Exchange creates it with the
// sign-in blocked. So the candidates are the disabled accounts
// ($filter=accountEnabled eq false, one request per 999), and their
// mailboxSettings are read in $batch requests of 20.
func (s *Service) SharedMailboxes(ctx context.Context, pbx string) ([]Mailbox, error) {
	app, err := s.Graph.AppClient(ctx, pbx)
	if err != nil {
		return nil, err
	}
	r := &run{s: s, pbx: pbx, app: app}
	return r.discover(ctx)
}

func (r *run) discover(ctx context.Context) ([]Mailbox, error) {
	var cands []graph.User
	q := url.Values{"$filter": {"accountEnabled eq false"}, "$select": {"id,displayName,userPrincipalName,mail,userType"}, "$top": {"999"}}
	err := graph.ForEachPage(ctx, r.app, "/users", q, func(p *graph.Page[graph.User]) error {
		r.requests.Add(1)
		for _, u := range p.Items {
			if !u.IsGuest() {
				cands = append(cands, u)
			}
		}
		return nil
	})
	if err != nil {
		r.requests.Add(1)
		return nil, err
	}
	var out []Mailbox
	for chunk := range slices.Chunk(cands, graph.MaxBatchSize) {
		reqs := make([]graph.BatchRequest, len(chunk))
		for i, u := range chunk {
			reqs[i] = graph.BatchRequest{Method: "GET", URL: "/users/" + url.PathEscape(u.ID) + "/mailboxSettings?$select=userPurpose"}
		}
		r.requests.Add(int64(len(reqs)))
		res, err := r.app.Batch(ctx, reqs)
		if err != nil {
			return nil, err
		}
		for i, u := range chunk {
			var ms struct {
				UserPurpose string `json:"userPurpose"`
			}
			if err := res[i].Decode(&ms); err != nil {
				if errors.Is(err, graph.ErrNotFound) || errors.Is(err, graph.ErrForbidden) {
					continue // no mailbox, or not readable: not a candidate
				}
				return nil, err
			}
			if strings.EqualFold(ms.UserPurpose, "shared") {
				out = append(out, Mailbox{ID: u.ID, DisplayName: u.DisplayName, UserPrincipalName: u.UserPrincipalName, Mail: u.Mail})
			}
		}
	}
	slices.SortFunc(out, func(a, b Mailbox) int {
		return strings.Compare(strings.ToLower(a.DisplayName), strings.ToLower(b.DisplayName))
	})
	return out, nil
}
