package sim

import (
	"slices"
	"testing"
)

func TestContactsPerUser(t *testing.T) {
	def := newBundle(t, func(c *Config) { c.Users = 60; c.Groups = 2 })
	b := newBundle(t, func(c *Config) { c.Users = 60; c.Groups = 2; c.ContactsPerUser = 50 })
	again := newBundle(t, func(c *Config) { c.Users = 60; c.Groups = 2; c.ContactsPerUser = 50 })

	members := 0
	for _, u := range b.ten.UserList() {
		cs, ok := b.ten.Contacts(u.ID)
		if !ok {
			t.Fatalf("user %s not found", u.ID)
		}
		dcs, _ := def.ten.Contacts(u.ID)
		if u.Shared || u.UserType == "Guest" {
			if !slices.EqualFunc(cs, dcs, func(a, b ContactInfo) bool { return a.ID == b.ID }) {
				t.Errorf("%s (shared %v, %s): contacts differ from the default data", u.ID, u.Shared, u.UserType)
			}
			continue
		}
		members++
		if len(cs) != 50 {
			t.Fatalf("member %s: %d contacts, want 50", u.ID, len(cs))
		}
		for _, c := range cs {
			if c.FolderID != cs[0].FolderID {
				t.Fatalf("member %s: contact %s outside the default folder", u.ID, c.ID)
			}
		}
		acs, _ := again.ten.Contacts(u.ID)
		if !slices.EqualFunc(cs, acs, func(a, b ContactInfo) bool {
			return a.ID == b.ID && a.DisplayName == b.DisplayName && a.MobilePhone == b.MobilePhone
		}) {
			t.Fatalf("member %s: contacts differ between two tenants with the same seed", u.ID)
		}
	}
	if members < 40 {
		t.Fatalf("only %d members", members)
	}

	// Graph serves them (delta, paged), and reading materialises nothing.
	u := b.ten.UserList()[20]
	items, _ := deltaRound(t, b, "/v1.0/users/"+u.ID+"/contactFolders/contacts/contacts/delta")
	if len(items) != 50 {
		t.Fatalf("delta returned %d contacts, want 50", len(items))
	}
	b.ten.st.mu.RLock()
	n := len(b.ten.st.mailboxes)
	b.ten.st.mu.RUnlock()
	if n != 0 {
		t.Fatalf("%d mailboxes materialised by reads", n)
	}
}
