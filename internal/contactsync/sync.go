package contactsync

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/graph"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// Clients gives the service Graph clients for a PBX's connected tenant
// (package integration implements it). Both return an error wrapping the
// integration's ErrNotConnected when the PBX is not connected.
type Clients interface {
	AppClient(ctx context.Context, pbx string) (*graph.Client, error)
	DelegatedClient(ctx context.Context, pbx string) (*graph.Client, error)
}

// Settings keys besides SettingsKey.
const (
	// DeltaPrefix starts the per-folder state keys: DeltaPrefix + mailbox + "." + folder.
	DeltaPrefix = "contacts.delta."
	// LastRunKey holds the last run's Report.
	LastRunKey = "contacts-sync.last-run"
	// AllMailboxesEntraID is the EntraID of the one phonebook of range all.
	AllMailboxesEntraID = "shared-mailboxes"
	// defaultFolder names the default Contacts folder in state keys.
	defaultFolder = "contacts"
)

// ErrRunning: a contacts sync of the PBX is already running.
var ErrRunning = errors.New("a contacts sync is already running for this PBX")

// Service syncs Outlook contacts. Its exported fields are its dependencies;
// zero values of the tuning fields take the defaults named per field.
type Service struct {
	Store  store.Store
	Graph  Clients
	Logger *slog.Logger
	Now    func() time.Time
	// Workers is the number of mailboxes read in parallel (default 8; the
	// graph client's per-tenant gate bounds the requests in flight as well).
	Workers int
	// MailboxConcurrency caps concurrent requests per mailbox (default 4,
	// Outlook's limit per app and mailbox).
	MailboxConcurrency int
	// PageSize is sent as Prefer: odata.maxpagesize on delta reads (default 200).
	PageSize int
	// DisableBatch reads every request directly instead of sending the first
	// two requests of 10 mailboxes in one $batch.
	DisableBatch bool

	mu       sync.Mutex
	running  map[string]bool
	boxes    map[string]chan struct{}
	instance string // this process in contacts-sync leases (lease.go)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now().UTC()
}

func (s *Service) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Service) audit(ctx context.Context, pbx, actor, action, detail string) {
	if err := s.Store.AppendAudit(ctx, store.AuditEntry{PBXID: pbx, At: s.now(), Actor: actor, Action: action, Target: "contacts-sync", Detail: detail}); err != nil {
		s.log().WarnContext(ctx, "audit", "err", err)
	}
}

// Report is the outcome of a run. Counts are contacts (personal and phonebook).
type Report struct {
	State      string     `json:"state"` // running | succeeded | partial | failed
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	Created    int        `json:"created"`
	Updated    int        `json:"updated"`
	Deleted    int        `json:"deleted"`
	Unchanged  int        `json:"unchanged"`
	Skipped    []Skip     `json:"skipped"`
	// Failed counts mailboxes that could not be read this run (throttled,
	// unavailable): what was synced from them is kept and retried next run.
	Failed int `json:"failed"`
	// Mailboxes counts the mailboxes read (personal and shared).
	Mailboxes int `json:"mailboxes"`
	// Phonebooks are the synced company phonebooks after the run.
	Phonebooks []PhonebookRef `json:"phonebooks"`
	// GraphRequests counts the Graph requests the run issued (retries the
	// graph client made after 429/5xx are not counted).
	GraphRequests int64  `json:"graphRequests"`
	Error         string `json:"error,omitempty"`
}

// Skip is a contact, user or mailbox the run left out, with the reason.
type Skip struct {
	Subject string `json:"subject"`
	Reason  string `json:"reason"`
	// Mailbox names whose contacts the subject belongs to (empty for users and mailboxes themselves).
	Mailbox string `json:"mailbox,omitempty"`
}

// PhonebookRef names a synced phonebook.
type PhonebookRef struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	EntraID string `json:"entraId"`
}

// folderState is the stored state of one folder of one mailbox.
type folderState struct {
	Owner     string `json:"owner"` // "extension:<id>" or "phonebook:<id>"
	Mailbox   string `json:"mailbox"`
	Folder    string `json:"folder"` // defaultFolder or the folder id
	DeltaLink string `json:"deltaLink"`
	// LinkAt is when DeltaLink was received (Unix seconds; 0 in states
	// stored before it was recorded).
	LinkAt int64 `json:"linkAt,omitempty"`
	// Sums are the idSum of every contact stored from this folder.
	Sums idSums `json:"sums,omitempty"`
	// IDs are the contacts stored from this folder, as states written
	// before Sums recorded them: read, turned into Sums, never written.
	IDs     []string        `json:"ids,omitempty"`
	Skipped map[string]Skip `json:"skipped,omitempty"`
}

func stateKey(mailbox, folder string) string { return DeltaPrefix + mailbox + "." + folder }

func ownerKey(o store.ContactOwner) string {
	if o.ExtensionID != "" {
		return "extension:" + o.ExtensionID
	}
	return "phonebook:" + o.PhonebookID
}

// job is one owner (an extension or a synced phonebook) and the mailboxes
// that fill it.
type job struct {
	owner     store.ContactOwner
	label     string // for reports: the extension or phonebook
	mailboxes []mailboxRef
	personal  bool
}

type mailboxRef struct{ id, label string }

// run is the state of one Run.
type run struct {
	s        *Service
	pbx      string
	app      *graph.Client
	del      *graph.Client // nil when the delegated client is unavailable
	appRead  bool          // the app holds Contacts.Read(Write)
	country  string
	requests atomic.Int64

	delRefused, delRead atomic.Int32 // delegated outcomes, to stop trying a client that cannot read

	mu  sync.Mutex
	rep *Report
	// states are the stored states by key, with only Owner, Mailbox and
	// Folder filled in (read-only once the workers start): the rest (the
	// link, the sums, the skips) is read per owner when it is synced, so a
	// run holds the full states of the owners in progress only.
	states map[string]*folderState
	// byOwner lists the state keys of each owner.
	byOwner map[string][]string
	// read holds the full states prefetchLink read for a $batch until
	// syncOwner takes them, so that no state is read twice.
	read map[string]*folderState
	// keepAll: the shared mailboxes could not be listed; the phonebook of
	// range all (owner keep) is left as it was.
	keepAll bool
	keep    string
}

func (r *run) addSkip(sk Skip) {
	r.mu.Lock()
	r.rep.Skipped = append(r.rep.Skipped, sk)
	r.mu.Unlock()
}

// AfterUserSync runs a contacts sync when personal or shared-mailbox sync is
// switched on; the lead calls it after each user sync (new extensions get
// their contacts, removed ones lose them). It returns nil, nil when contacts
// sync is off or a run is already in progress.
func (s *Service) AfterUserSync(ctx context.Context, pbx string) (*Report, error) {
	set, err := s.Settings(ctx, pbx)
	if err != nil {
		return nil, err
	}
	if !set.Personal.Enabled && !set.SharedMailboxes.Enabled {
		return nil, nil
	}
	rep, err := s.Run(ctx, pbx)
	if errors.Is(err, ErrRunning) {
		return nil, nil
	}
	return rep, err
}

// LastRun returns the last finished run's report (store.ErrNotFound when none).
func (s *Service) LastRun(ctx context.Context, pbx string) (*Report, error) {
	raw, err := s.Store.GetSetting(ctx, pbx, LastRunKey)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Running reports whether a run of the PBX is in progress.
func (s *Service) Running(pbx string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[pbx]
}

// Run syncs the PBX's Outlook contacts once: personal contacts of the synced
// users in range and the chosen shared mailboxes' phonebooks. A mailbox that
// fails does not fail the others; the report lists what was skipped and why.
// The returned error is for what stops the whole run (not connected, store
// errors); the report is returned with it when there is one.
func (s *Service) Run(ctx context.Context, pbx string) (*Report, error) {
	s.mu.Lock()
	if s.running == nil {
		s.running = map[string]bool{}
	}
	if s.running[pbx] {
		s.mu.Unlock()
		return nil, ErrRunning
	}
	s.running[pbx] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, pbx)
		s.mu.Unlock()
	}()
	// One run per PBX across instances too (ErrRunning while another holds it).
	release, err := s.takeLease(ctx, pbx)
	if err != nil {
		return nil, err
	}
	defer release()

	rep := &Report{State: "running", StartedAt: s.now(), Skipped: []Skip{}, Phonebooks: []PhonebookRef{}}
	err = s.run(ctx, pbx, rep)
	fin := s.now()
	rep.FinishedAt = &fin
	switch {
	case err != nil:
		rep.State, rep.Error = "failed", err.Error()
	case rep.Failed > 0:
		rep.State = "partial"
	default:
		rep.State = "succeeded"
	}
	if raw, merr := json.Marshal(rep); merr == nil {
		if serr := s.Store.UpdateSetting(context.WithoutCancel(ctx), pbx, LastRunKey, func([]byte) ([]byte, error) { return raw, nil }); serr != nil {
			s.log().ErrorContext(ctx, "storing the contacts sync report", "pbx", pbx, "err", serr)
		}
	}
	s.log().InfoContext(ctx, "contacts sync finished", "pbx", pbx, "state", rep.State, "created", rep.Created,
		"updated", rep.Updated, "deleted", rep.Deleted, "unchanged", rep.Unchanged, "skipped", len(rep.Skipped),
		"failed", rep.Failed, "graphRequests", rep.GraphRequests, "duration", fin.Sub(rep.StartedAt))
	return rep, err
}

func (s *Service) run(ctx context.Context, pbx string, rep *Report) error {
	set, err := s.Settings(ctx, pbx)
	if err != nil {
		return err
	}
	r := &run{s: s, pbx: pbx, rep: rep, country: set.DefaultCountry}
	defer func() { rep.GraphRequests = r.requests.Load() }()
	if err := r.loadStates(ctx); err != nil {
		return err
	}
	var jobs []job
	if set.Personal.Enabled || set.SharedMailboxes.Enabled {
		if err := r.connect(ctx); err != nil {
			return err
		}
	}
	if set.Personal.Enabled {
		js, err := r.personalJobs(ctx, set.Personal)
		if err != nil {
			return err
		}
		jobs = append(jobs, js...)
	}
	js, err := r.phonebookJobs(ctx, set.SharedMailboxes)
	if err != nil {
		return err
	}
	jobs = append(jobs, js...)

	// Owners with stored state that no job covers any more: clear them.
	if err := r.releaseOrphans(ctx, jobs); err != nil {
		return err
	}

	// The first mailbox is read alone: it tells which client reads, and so
	// which client the $batch prefetches of the others use.
	if i := slices.IndexFunc(jobs, func(j job) bool { return len(j.mailboxes) == 1 }); i >= 0 {
		if err := r.syncOwner(ctx, jobs[i], nil); err != nil {
			return err
		}
		jobs = slices.Delete(slices.Clone(jobs), i, i+1)
	}
	workers := cmp.Or(s.Workers, 8)
	chunks := chunkJobs(jobs)
	ch := make(chan []job)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range min(workers, max(len(chunks), 1)) {
		wg.Go(func() {
			for chunk := range ch {
				pre := r.prefetch(ctx, chunk)
				for _, j := range chunk {
					if err := r.syncOwner(ctx, j, pre); err != nil {
						errOnce.Do(func() { firstErr = err })
					}
				}
			}
		})
	}
feed:
	for _, c := range chunks {
		select {
		case ch <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// connect gets the clients: the app client is required, the delegated one
// is used when available.
func (r *run) connect(ctx context.Context) error {
	app, err := r.s.Graph.AppClient(ctx, r.pbx)
	if err != nil {
		return err
	}
	r.app = app
	roles, err := app.GrantedRoles(ctx)
	if err != nil {
		return fmt.Errorf("reading the app's permissions: %w", err)
	}
	r.appRead = slices.Contains(roles, "Contacts.Read") || slices.Contains(roles, "Contacts.ReadWrite")
	if del, err := r.s.Graph.DelegatedClient(ctx, r.pbx); err == nil {
		r.del = del
	} else {
		r.s.log().WarnContext(ctx, "delegated client unavailable: reading contacts with the application permission only", "pbx", r.pbx, "err", err)
	}
	if r.del == nil && !r.appRead {
		return errors.New("no client can read Outlook contacts: grant the application permission Contacts.Read or reconnect the authorization account")
	}
	return nil
}

func (r *run) loadStates(ctx context.Context) error {
	raw, err := r.s.Store.ListSettings(ctx, r.pbx, DeltaPrefix)
	if err != nil {
		return err
	}
	r.states = make(map[string]*folderState, len(raw))
	for k, v := range raw {
		var st folderState
		if err := json.Unmarshal(v, &st); err != nil {
			r.s.log().WarnContext(ctx, "dropping unreadable contacts delta state", "key", k, "err", err)
			st = folderState{}
		}
		r.states[k] = &folderState{Owner: st.Owner, Mailbox: st.Mailbox, Folder: st.Folder}
		// Each raw value can go as soon as it is decoded: a run of many
		// mailboxes does not hold every state at once.
		delete(raw, k)
	}
	r.index()
	return nil
}

// takeState returns the whole state of a key: the one prefetchLink read, or
// the stored one.
func (r *run) takeState(ctx context.Context, key string) (*folderState, error) {
	r.mu.Lock()
	st, ok := r.read[key]
	delete(r.read, key)
	r.mu.Unlock()
	if ok {
		return st, nil
	}
	return r.fullState(ctx, key)
}

// fullState reads the whole stored state of a key (nil when it is gone).
func (r *run) fullState(ctx context.Context, key string) (*folderState, error) {
	raw, err := r.s.Store.GetSetting(ctx, r.pbx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st folderState
	if err := json.Unmarshal(raw, &st); err != nil {
		r.s.log().WarnContext(ctx, "dropping unreadable contacts delta state", "key", key, "err", err)
		return &folderState{}, nil
	}
	if st.IDs != nil {
		st.Sums, st.IDs = sumsOf(st.IDs), nil
	}
	return &st, nil
}

func (r *run) index() {
	r.byOwner = map[string][]string{}
	for k, st := range r.states {
		r.byOwner[st.Owner] = append(r.byOwner[st.Owner], k)
	}
}

// personalJobs resolves the personal range to synced extensions.
func (r *run) personalJobs(ctx context.Context, p Personal) ([]job, error) {
	synced, err := r.s.syncedUsers(ctx, r.pbx)
	if err != nil {
		return nil, err
	}
	var ids []string
	switch p.Range {
	case RangeUsers:
		for _, id := range p.UserIDs {
			if synced[id] == nil {
				r.addSkip(Skip{Subject: "user " + id, Reason: "is not a synced user: add the user to user sync first"})
				continue
			}
			ids = append(ids, id)
		}
	case RangeGroups:
		seen := map[string]bool{}
		for _, g := range p.GroupIDs {
			members, err := r.groupUsers(ctx, g)
			if err != nil {
				if errors.Is(err, graph.ErrNotFound) {
					r.addSkip(Skip{Subject: "group " + g, Reason: "the group no longer exists in Microsoft Entra ID: remove it from the contacts sync range"})
					continue
				}
				return nil, fmt.Errorf("reading the members of group %s: %w", g, err)
			}
			for _, u := range members {
				if seen[u.ID] {
					continue
				}
				seen[u.ID] = true
				if synced[u.ID] == nil {
					r.addSkip(Skip{Subject: userLabel(u), Reason: "is in a contacts sync group but is not a synced user: add the user to user sync first"})
					continue
				}
				ids = append(ids, u.ID)
			}
		}
	default:
		ids = slices.Collect(maps.Keys(synced))
	}
	slices.Sort(ids)
	jobs := make([]job, 0, len(ids))
	for _, id := range ids {
		e := synced[id]
		label := extLabel(e)
		jobs = append(jobs, job{owner: store.ContactOwner{ExtensionID: e.ID}, label: label, personal: true,
			mailboxes: []mailboxRef{{id: id, label: label}}})
	}
	return jobs, nil
}

func extLabel(e *directory.Extension) string {
	name := strings.TrimSpace(e.FirstName + " " + e.LastName)
	if e.Email != "" {
		name += " <" + e.Email + ">"
	}
	return strings.TrimSpace(e.Number + " " + name)
}

func userLabel(u graph.User) string {
	switch {
	case u.UserPrincipalName != "":
		return u.DisplayName + " <" + u.UserPrincipalName + ">"
	case u.DisplayName != "":
		return u.DisplayName
	}
	return "user " + u.ID
}

// groupUsers lists a group's users, nested groups included.
func (r *run) groupUsers(ctx context.Context, groupID string) ([]graph.User, error) {
	var out []graph.User
	q := url.Values{"$select": {"id,displayName,userPrincipalName"}, "$top": {"999"}}
	err := graph.ForEachPage(ctx, r.app, "/groups/"+url.PathEscape(groupID)+"/transitiveMembers/microsoft.graph.user", q, func(p *graph.Page[graph.User]) error {
		r.requests.Add(1)
		out = append(out, p.Items...)
		return nil
	})
	if err != nil {
		r.requests.Add(1)
	}
	return out, err
}

// phonebookJobs makes the synced phonebooks match the settings (create,
// rename, delete) and returns a job per phonebook.
func (r *run) phonebookJobs(ctx context.Context, sh Shared) ([]job, error) {
	type want struct {
		name      string
		mailboxes []mailboxRef
	}
	wanted := map[string]want{} // by phonebook EntraID
	if sh.Enabled {
		switch sh.Range {
		case RangeMailboxes:
			for _, b := range sh.Mailboxes {
				wanted[b.MailboxID] = want{b.Phonebook, []mailboxRef{{id: b.MailboxID, label: b.MailboxID}}}
			}
		default:
			boxes, err := r.discover(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				// Keep the phonebook as it is; try again next run.
				r.s.log().WarnContext(ctx, "listing shared mailboxes failed", "pbx", r.pbx, "err", err)
				r.addSkip(Skip{Subject: "shared mailboxes", Reason: "could not list the shared mailboxes (" + err.Error() + "); the phonebook " + sh.Phonebook + " is kept as it was"})
				r.rep.Failed++
				wanted[AllMailboxesEntraID] = want{sh.Phonebook, nil}
				r.keepAll = true
				break
			}
			var refs []mailboxRef
			for _, b := range boxes {
				refs = append(refs, mailboxRef{id: b.ID, label: b.label()})
			}
			wanted[AllMailboxesEntraID] = want{sh.Phonebook, refs}
		}
	}
	pbs, err := r.s.Store.ListPhonebooks(ctx, r.pbx)
	if err != nil {
		return nil, err
	}
	have := map[string]*directory.Phonebook{}
	for i := range pbs {
		p := &pbs[i]
		if !p.Synced() {
			continue
		}
		if _, ok := wanted[p.EntraID]; !ok || have[p.EntraID] != nil {
			// No longer chosen (or a duplicate): its contacts and grants go with it.
			if err := r.s.Store.DeletePhonebook(ctx, r.pbx, p.ID, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			r.rep.Deleted += p.ContactCount
			r.s.audit(ctx, r.pbx, "contacts-sync", "phonebook.delete", p.Name)
			continue
		}
		have[p.EntraID] = p
	}
	var jobs []job
	for _, eid := range slices.Sorted(maps.Keys(wanted)) {
		w := wanted[eid]
		p := have[eid]
		switch {
		case p == nil:
			p = &directory.Phonebook{Name: w.name, Source: directory.SourceEntra, EntraID: eid}
			if err := r.s.Store.CreatePhonebook(ctx, r.pbx, p); err != nil {
				return nil, err
			}
			r.s.audit(ctx, r.pbx, "contacts-sync", "phonebook.create", p.Name)
		case p.Name != w.name:
			if p, err = r.s.Store.UpdatePhonebook(ctx, r.pbx, p.ID, func(p *directory.Phonebook) error { p.Name = w.name; return nil }); err != nil {
				return nil, err
			}
		}
		r.rep.Phonebooks = append(r.rep.Phonebooks, PhonebookRef{ID: p.ID, Name: p.Name, EntraID: p.EntraID})
		if eid == AllMailboxesEntraID && r.keepAll {
			r.keep = ownerKey(store.ContactOwner{PhonebookID: p.ID})
			continue
		}
		jobs = append(jobs, job{owner: store.ContactOwner{PhonebookID: p.ID}, label: "phonebook " + p.Name, mailboxes: w.mailboxes})
	}
	return jobs, nil
}

// releaseOrphans clears what was synced into owners no job covers any more
// (users out of range, personal sync switched off, deleted phonebooks) and
// forgets their folder states.
func (r *run) releaseOrphans(ctx context.Context, jobs []job) error {
	live := map[string]bool{r.keep: true}
	for _, j := range jobs {
		live[ownerKey(j.owner)] = true
	}
	cleared := map[string]bool{}
	for key, st := range r.states {
		if live[st.Owner] {
			continue
		}
		if ext, ok := strings.CutPrefix(st.Owner, "extension:"); ok && !cleared[st.Owner] {
			cleared[st.Owner] = true
			n, err := r.clearOwner(ctx, store.ContactOwner{ExtensionID: ext})
			if err != nil {
				return err
			}
			r.rep.Deleted += n
		}
		if err := r.s.Store.UpdateSetting(ctx, r.pbx, key, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
			return err
		}
		delete(r.states, key)
	}
	r.index()
	return nil
}

// clearOwner removes an owner's synced contacts; a vanished owner is fine.
func (r *run) clearOwner(ctx context.Context, o store.ContactOwner) (int, error) {
	cur, err := r.stored(ctx, o)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil || len(cur) == 0 {
		return 0, err
	}
	if err := r.s.Store.ReplaceSyncedContacts(ctx, r.pbx, o, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	return len(cur), nil
}

// stored reads the owner's synced contacts by Entra id.
func (r *run) stored(ctx context.Context, o store.ContactOwner) (map[string]directory.Contact, error) {
	out := map[string]directory.Contact{}
	q := store.ContactQuery{PhonebookID: o.PhonebookID, ExtensionID: o.ExtensionID, Limit: 1000}
	for {
		items, next, err := r.s.Store.ListContacts(ctx, r.pbx, q)
		if err != nil {
			return nil, err
		}
		for _, c := range items {
			if c.Source == directory.SourceEntra && c.EntraID != "" {
				out[c.EntraID] = c
			}
		}
		if next == "" {
			return out, nil
		}
		q.Cursor = next
	}
}

// mailboxGate returns the semaphore of one mailbox (MailboxConcurrency slots).
func (s *Service) mailboxGate(pbx, mailbox string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.boxes == nil {
		s.boxes = map[string]chan struct{}{}
	}
	k := pbx + "/" + strings.ToLower(mailbox)
	g := s.boxes[k]
	if g == nil {
		g = make(chan struct{}, cmp.Or(s.MailboxConcurrency, 4))
		s.boxes[k] = g
	}
	return g
}

// syncOwner reads every mailbox of the job, writes the owner's contacts in
// one transaction, then advances the folder states.
func (r *run) syncOwner(ctx context.Context, j job, pre map[string]*prefetch) error {
	before, err := r.stored(ctx, j.owner)
	if errors.Is(err, store.ErrNotFound) {
		return nil // the extension was deleted meanwhile
	}
	if err != nil {
		return err
	}
	own := &owned{cur: maps.Clone(before), before: before}
	cur := own.cur
	ok := ownerKey(j.owner)
	// The owner's stored folder states by mailbox.
	byBox := map[string]map[string]*folderState{}
	loaded := map[string]*folderState{}
	for _, k := range r.byOwner[ok] {
		st, err := r.takeState(ctx, k)
		if err != nil {
			return err
		}
		if st == nil || st.Owner != ok {
			continue // gone or taken over meanwhile
		}
		loaded[k] = st
		if byBox[st.Mailbox] == nil {
			byBox[st.Mailbox] = map[string]*folderState{}
		}
		byBox[st.Mailbox][k] = st
	}

	next := map[string]*folderState{} // states to store (nil = delete)
	live := map[string]bool{}
	for _, mb := range j.mailboxes {
		live[mb.id] = true
		res := r.readMailbox(ctx, j, mb, byBox[mb.id], own, pre[mb.id])
		maps.Copy(next, res)
	}
	// Mailboxes of earlier runs that the job no longer reads.
	for box, sts := range byBox {
		if live[box] {
			continue
		}
		for k, st := range sts {
			own.drop(st.Sums)
			next[k] = nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The dialling forms follow the numbers and the PBX's default country:
	// contacts stored before the country changed (or before the forms were
	// stored at all) are rewritten.
	for id, c := range cur {
		SetDialForms(&c, r.country)
		cur[id] = c
	}

	created, updated, deleted, unchanged := diff(before, cur)
	if created+updated+deleted > 0 {
		list := make([]directory.Contact, 0, len(cur))
		for _, id := range slices.Sorted(maps.Keys(cur)) {
			list = append(list, cur[id])
		}
		if err := r.s.Store.ReplaceSyncedContacts(ctx, r.pbx, j.owner, list); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil // the owner vanished during the run
			}
			return fmt.Errorf("writing the contacts of %s: %w", j.label, err)
		}
	}
	// Advance the folder states only now that the contacts are stored.
	for k, st := range next {
		var raw []byte
		if st != nil {
			if raw, err = json.Marshal(st); err != nil {
				return err
			}
			if old := loaded[k]; old != nil {
				if oldRaw, _ := json.Marshal(old); string(oldRaw) == string(raw) {
					continue
				}
			}
		}
		if err := r.s.Store.UpdateSetting(ctx, r.pbx, k, func([]byte) ([]byte, error) { return raw, nil }); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.rep.Created += created
	r.rep.Updated += updated
	r.rep.Deleted += deleted
	r.rep.Unchanged += unchanged
	r.mu.Unlock()
	return nil
}

func diff(before, after map[string]directory.Contact) (created, updated, deleted, unchanged int) {
	for id, a := range after {
		b, ok := before[id]
		switch {
		case !ok:
			created++
		case sameContact(a, b):
			unchanged++
		default:
			updated++
		}
	}
	for id := range before {
		if _, ok := after[id]; !ok {
			deleted++
		}
	}
	return
}

func sameContact(a, b directory.Contact) bool {
	return a.FirstName == b.FirstName && a.LastName == b.LastName && a.Company == b.Company && a.Mobile == b.Mobile &&
		a.Home == b.Home && a.Business == b.Business && a.Email == b.Email &&
		a.MobileDial == b.MobileDial && a.HomeDial == b.HomeDial && a.BusinessDial == b.BusinessDial
}

// access says how a mailbox answered.
type access int

const (
	accessOK      access = iota
	accessDenied         // 401/403 from every client: not shared / not a member
	accessMissing        // 404: no such user or no Exchange Online mailbox
	accessFailed         // throttled, unavailable...: keep what was synced, retry next run
)

func classify(err error) access {
	switch {
	case err == nil:
		return accessOK
	case errors.Is(err, graph.ErrForbidden), errors.Is(err, graph.ErrUnauthorized):
		return accessDenied
	case errors.Is(err, graph.ErrNotFound):
		return accessMissing
	}
	return accessFailed
}

// clients returns the clients to try for a mailbox, delegated first.
func (r *run) clients() []*graph.Client {
	var out []*graph.Client
	// When the app may read, stop trying the delegated client once it was
	// refused for the first few mailboxes and has read none: its token lacks
	// the *.Shared scopes. Without that fallback it is always tried.
	if r.del != nil && (!r.appRead || r.delRead.Load() > 0 || r.delRefused.Load() < 5) {
		out = append(out, r.del)
	}
	if r.appRead {
		out = append(out, r.app)
	}
	return out
}

// readMailbox reads every folder of one mailbox into cur and returns the
// folder states to store. Failures are reported and leave cur as it was for
// that mailbox (transient) or remove its contacts (access lost).
func (r *run) readMailbox(ctx context.Context, j job, mb mailboxRef, old map[string]*folderState, own *owned, pre *prefetch) map[string]*folderState {
	gate := r.s.mailboxGate(r.pbx, mb.id)
	select {
	case gate <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	defer func() { <-gate }()
	r.mu.Lock()
	r.rep.Mailboxes++
	r.mu.Unlock()

	ok := ownerKey(j.owner)
	stateOf := func(folder string) *folderState {
		if st := old[stateKey(mb.id, folder)]; st != nil && st.Owner == ok {
			return st
		}
		return &folderState{Owner: ok, Mailbox: mb.id, Folder: folder}
	}

	// The default folder first: it decides which client reads the mailbox.
	var c *graph.Client
	var first *folderRead
	var lastErr error
	if pre != nil && pre.deltaErr != nil && classify(pre.deltaErr) == accessFailed {
		pre = nil // throttled or failed inside the batch: read it directly
	}
	for _, cl := range r.clients() {
		var fr *folderRead
		var err error
		switch {
		case pre != nil && pre.client == cl && pre.deltaErr != nil && !errors.Is(pre.deltaErr, graph.ErrResyncRequired):
			err = pre.deltaErr
		case pre != nil && pre.client == cl && pre.deltaErr == nil:
			fr, err = r.readFolder(ctx, cl, mb, stateOf(defaultFolder), pre.delta)
		default:
			fr, err = r.readFolder(ctx, cl, mb, stateOf(defaultFolder), nil)
		}
		if cl == r.del {
			if err == nil {
				r.delRead.Add(1)
			} else if classify(err) == accessDenied {
				r.delRefused.Add(1)
			}
		}
		if err == nil {
			c, first = cl, fr
			break
		}
		lastErr = err
		if classify(err) != accessDenied {
			break
		}
	}
	if c == nil {
		if lastErr == nil {
			return r.mailboxFailed(ctx, j, mb, errors.New("no Graph client may read Outlook contacts"))
		}
		return r.mailboxLost(ctx, j, mb, old, own, lastErr)
	}
	reads := []*folderRead{first}
	// The folders under the default one; a client that may read the default
	// folder only (a folder shared on its own) cannot list them, which is fine.
	var folders []graph.ContactFolder
	var err error
	switch {
	case pre != nil && pre.client == c && pre.foldersErr == nil:
		folders, err = r.listFolders(ctx, c, mb.id, pre.folders)
	case pre != nil && pre.client == c && classify(pre.foldersErr) == accessDenied:
		err = pre.foldersErr
	default:
		folders, err = r.listFolders(ctx, c, mb.id, nil)
	}
	switch classify(err) {
	case accessOK:
		for _, f := range folders {
			fr, err := r.readFolder(ctx, c, mb, stateOf(f.ID), nil)
			switch classify(err) {
			case accessOK:
				reads = append(reads, fr)
			case accessDenied, accessMissing:
				// Not shared, or deleted meanwhile: handled as a folder gone.
			default:
				return r.mailboxFailed(ctx, j, mb, err)
			}
		}
	case accessDenied:
		// Only the default folder is readable.
	default:
		return r.mailboxFailed(ctx, j, mb, err)
	}

	out := map[string]*folderState{}
	seen := map[string]bool{}
	for _, fr := range reads {
		fr.apply(own, mb)
		k := stateKey(mb.id, fr.st.Folder)
		out[k], seen[k] = fr.st, true
		for _, sk := range fr.st.Skipped {
			r.addSkip(sk)
		}
	}
	// Folders read before and gone now (deleted, moved, no longer shared).
	for k, st := range old {
		if !seen[k] {
			own.drop(st.Sums)
			out[k] = nil
		}
	}
	return out
}

// mailboxLost handles a mailbox no client may read: its contacts are removed.
func (r *run) mailboxLost(ctx context.Context, j job, mb mailboxRef, old map[string]*folderState, own *owned, err error) map[string]*folderState {
	var reason string
	switch classify(err) {
	case accessDenied:
		if j.personal {
			reason = "the Outlook Contacts folder is not shared with the authorization account (share it with Read: Full details)"
		} else {
			reason = "the authorization account cannot read this shared mailbox: add it as a member of the mailbox in the Microsoft 365 admin center"
		}
		if r.appRead {
			reason += ", and an Exchange application access policy keeps the app's Contacts.Read permission from it"
		} else {
			reason += ", and the app has no Contacts.Read application permission"
		}
	case accessMissing:
		reason = "has no Exchange Online mailbox (or no longer exists)"
	case accessFailed:
		return r.mailboxFailed(ctx, j, mb, err)
	}
	n := 0
	out := map[string]*folderState{}
	for k, st := range old {
		n += own.drop(st.Sums)
		out[k] = nil
	}
	if n > 0 {
		reason += fmt.Sprintf("; its %d synced contacts were removed", n)
	}
	r.s.log().InfoContext(ctx, "mailbox not readable", "pbx", r.pbx, "mailbox", mb.id, "err", err)
	r.addSkip(Skip{Subject: mb.label, Reason: reason})
	return out
}

// mailboxFailed handles a transient failure: nothing of the mailbox changes.
func (r *run) mailboxFailed(ctx context.Context, j job, mb mailboxRef, err error) map[string]*folderState {
	if ctx.Err() != nil {
		return nil
	}
	r.s.log().WarnContext(ctx, "reading mailbox failed", "pbx", r.pbx, "mailbox", mb.id, "err", err)
	r.mu.Lock()
	r.rep.Failed++
	r.mu.Unlock()
	reason := "could not be read (" + err.Error() + "); its contacts are kept as they were and it is retried next run"
	var ge *graph.Error
	if errors.As(err, &ge) && ge.Status == http.StatusTooManyRequests {
		reason = "Outlook is throttling this mailbox; its contacts are kept as they were and it is retried next run"
	}
	r.addSkip(Skip{Subject: mb.label, Reason: reason})
	return nil
}

// listFolders lists the folders under the default Contacts folder; first,
// when set, is the first page already read in a $batch.
func (r *run) listFolders(ctx context.Context, c *graph.Client, mailbox string, first *graph.Page[graph.ContactFolder]) ([]graph.ContactFolder, error) {
	var out []graph.ContactFolder
	link, q := "/users/"+url.PathEscape(mailbox)+"/contactFolders", url.Values{"$top": {"100"}}
	if first != nil {
		out = append(out, first.Items...)
		if first.NextLink == "" {
			return out, nil
		}
		link, q = first.NextLink, nil
	}
	err := graph.ForEachPage(ctx, c, link, q, func(p *graph.Page[graph.ContactFolder]) error {
		r.requests.Add(1)
		out = append(out, p.Items...)
		return nil
	})
	if err != nil {
		r.requests.Add(1)
	}
	return out, err
}

// folderRead is one finished delta round of one folder, not yet applied.
type folderRead struct {
	st    *folderState // the state after the round (applied to a copy)
	prev  *folderState
	full  bool
	items []graph.Contact
}

// contactSelect is what the sync reads of a contact.
var contactSelect = []string{"givenName", "surname", "displayName", "companyName", "mobilePhone", "homePhones",
	"businessPhones", "emailAddresses"}

// readFolder runs one delta round of a folder (a full read when there is no
// link or the link expired). first, when set, is the round's first page,
// already read in a $batch.
func (r *run) readFolder(ctx context.Context, c *graph.Client, mb mailboxRef, st *folderState, first *graph.Page[graph.Contact]) (*folderRead, error) {
	folder := st.Folder
	if folder == defaultFolder {
		folder = ""
	}
	start := st.DeltaLink
	for {
		var items []graph.Contact
		link := start
		if first != nil {
			items = append(items, first.Items...)
			if first.DeltaLink != "" {
				return r.folderDone(st, first.DeltaLink, start == "", items), nil
			}
			if first.NextLink == "" {
				return nil, fmt.Errorf("contacts delta of %s: a page without nextLink or deltaLink", mb.id)
			}
			link, first = first.NextLink, nil
		}
		newLink, err := c.ContactsDelta(ctx, mb.id, folder, link, contactSelect, func(p graph.DeltaPage[graph.Contact]) error {
			r.requests.Add(1)
			items = append(items, p.Items...)
			return nil
		}, graph.WithMaxPageSize(r.pageSize()), graph.WithImmutableIDs())
		if err != nil {
			r.requests.Add(1)
			if start != "" && errors.Is(err, graph.ErrResyncRequired) {
				r.s.log().InfoContext(ctx, "contacts delta expired: full read", "pbx", r.pbx, "mailbox", mb.id, "folder", st.Folder)
				start = ""
				continue
			}
			return nil, err
		}
		return r.folderDone(st, newLink, start == "", items), nil
	}
}

func (r *run) pageSize() int { return cmp.Or(r.s.PageSize, 200) }

// linkRefresh is how long a delta round that saw no change keeps the
// stored deltaLink instead of the new one: an unchanged folder costs no
// write, and its link is renewed once a day all the same (Outlook delta
// tokens have no fixed lifetime but are evicted from a cache, graph-facts 5).
const linkRefresh = 24 * time.Hour

func (r *run) folderDone(st *folderState, link string, full bool, items []graph.Contact) *folderRead {
	next := &folderState{Owner: st.Owner, Mailbox: st.Mailbox, Folder: st.Folder, DeltaLink: link, LinkAt: r.s.now().Unix()}
	if !full && len(items) == 0 && st.DeltaLink != "" && r.s.now().Sub(time.Unix(st.LinkAt, 0)) < linkRefresh {
		// Nothing changed since the stored link: it still reads from the
		// same point, so the state stays as stored and is not rewritten.
		next.DeltaLink, next.LinkAt = st.DeltaLink, st.LinkAt
	}
	return &folderRead{st: next, prev: st, full: full, items: items}
}

// prefetch holds the first page of a mailbox's default-folder delta round
// and of its folder list, read for many mailboxes in one $batch.
type prefetch struct {
	client     *graph.Client
	delta      *graph.Page[graph.Contact]
	deltaErr   error
	folders    *graph.Page[graph.ContactFolder]
	foldersErr error
}

// batchMailboxes is the number of mailboxes whose first two requests share
// one $batch (2 x 10 = Graph's 20 requests per batch).
const batchMailboxes = graph.MaxBatchSize / 2

// chunkJobs groups single-mailbox jobs by batchMailboxes; a job with several
// mailboxes (the phonebook of range all) goes alone and reads without $batch.
func chunkJobs(jobs []job) [][]job {
	var out [][]job
	var cur []job
	for _, j := range jobs {
		if len(j.mailboxes) != 1 {
			out = append(out, []job{j})
			continue
		}
		cur = append(cur, j)
		if len(cur) == batchMailboxes {
			out, cur = append(out, cur), nil
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// prefetch reads, for every single-mailbox job of the chunk, the first page
// of the default folder's delta round and of the folder list in one $batch
// with the client the mailbox is tried with first. What the batch cannot
// answer is read directly later (a nil or partial map is fine).
func (r *run) prefetch(ctx context.Context, chunk []job) map[string]*prefetch {
	if r.s.DisableBatch || len(chunk) < 2 || len(chunk[0].mailboxes) != 1 {
		return nil
	}
	// The delegated client goes first in readMailbox, but a batch is sent
	// with it only once it has read a mailbox in this run: until then the
	// app client (when it may read) prefetches, so that a delegated token
	// without the *.Shared scopes does not cost a refused batch per chunk.
	var c *graph.Client
	switch {
	case r.del != nil && r.delRead.Load() > 0:
		c = r.del
	case r.appRead:
		c = r.app
	default:
		c = r.del
	}
	if c == nil {
		return nil
	}
	var reqs []graph.BatchRequest
	var boxes []string
	prefer := map[string]string{"Prefer": fmt.Sprintf(`odata.maxpagesize=%d, IdType="ImmutableId"`, r.pageSize())}
	for _, j := range chunk {
		mb := j.mailboxes[0].id
		u := "/users/" + url.PathEscape(mb) + "/contacts/delta?$select=" + strings.Join(contactSelect, ",")
		if link, ok := r.prefetchLink(ctx, j, mb); !ok {
			continue // read directly by syncOwner
		} else if link != "" {
			u = link
		}
		reqs = append(reqs,
			graph.BatchRequest{Method: http.MethodGet, URL: u, Headers: prefer},
			graph.BatchRequest{Method: http.MethodGet, URL: "/users/" + url.PathEscape(mb) + "/contactFolders?$top=100"})
		boxes = append(boxes, mb)
	}
	if len(boxes) < 2 {
		return nil
	}
	r.requests.Add(int64(len(reqs)))
	res, err := c.Batch(ctx, reqs)
	if err != nil {
		r.s.log().WarnContext(ctx, "contacts $batch failed: reading the mailboxes one by one", "pbx", r.pbx, "err", err)
		return nil
	}
	out := make(map[string]*prefetch, len(boxes))
	for i, mb := range boxes {
		p := &prefetch{client: c}
		if d, f := res[2*i], res[2*i+1]; d.Err != nil {
			p.deltaErr = d.Err
		} else if p.delta, p.deltaErr = graph.DecodePage[graph.Contact](d.Body); p.deltaErr == nil {
			if f.Err != nil {
				p.foldersErr = f.Err
			} else {
				p.folders, p.foldersErr = graph.DecodePage[graph.ContactFolder](f.Body)
			}
		}
		if p.deltaErr == nil && p.folders == nil && p.foldersErr == nil {
			p.foldersErr = errors.New("no folder page")
		}
		out[mb] = p
	}
	return out
}

// prefetchLink returns the stored deltaLink of a mailbox's default folder
// as a $batch URL ("" for a full read); false when the mailbox is better
// read directly.
func (r *run) prefetchLink(ctx context.Context, j job, mb string) (string, bool) {
	key := stateKey(mb, defaultFolder)
	if st := r.states[key]; st == nil || st.Owner != ownerKey(j.owner) {
		return "", true
	}
	st, err := r.fullState(ctx, key)
	if err != nil {
		return "", false
	}
	if st != nil {
		r.mu.Lock()
		if r.read == nil {
			r.read = map[string]*folderState{}
		}
		r.read[key] = st // syncOwner takes it instead of reading it again
		r.mu.Unlock()
	}
	if st == nil || st.Owner != ownerKey(j.owner) || st.DeltaLink == "" {
		return "", true
	}
	i := strings.Index(st.DeltaLink, "/v1.0/")
	if i < 0 {
		return "", false
	}
	return st.DeltaLink[i:], true
}

// apply folds the round into own and completes fr.st (sums and skips).
func (fr *folderRead) apply(own *owned, mb mailboxRef) {
	if !fr.full && len(fr.items) == 0 {
		fr.st.Sums, fr.st.Skipped = fr.prev.Sums, fr.prev.Skipped
		return
	}
	ids := map[uint64]bool{}
	skipped := map[string]Skip{}
	if fr.full {
		own.drop(fr.prev.Sums)
	} else {
		for _, h := range fr.prev.Sums {
			ids[h] = true
		}
		maps.Copy(skipped, fr.prev.Skipped)
	}
	for _, gc := range fr.items {
		if gc.ID == "" {
			continue
		}
		h := idSum(gc.ID)
		if gc.IsRemoved() {
			own.remove(gc.ID)
			delete(ids, h)
			delete(skipped, gc.ID)
			continue
		}
		c, reason := convert(gc)
		if reason != "" {
			delete(own.cur, gc.ID)
			delete(own.read, gc.ID)
			delete(ids, h)
			skipped[gc.ID] = Skip{Subject: subject(gc), Reason: reason, Mailbox: mb.label}
			continue
		}
		own.put(gc.ID, c)
		ids[h] = true
		delete(skipped, gc.ID)
	}
	fr.st.Sums = slices.Sorted(maps.Keys(ids))
	if len(skipped) > 0 {
		fr.st.Skipped = skipped
	}
}

// convert maps an Outlook contact to a PBX contact, or says why it is skipped.
func convert(gc graph.Contact) (directory.Contact, string) {
	c := directory.Contact{
		FirstName: strings.TrimSpace(gc.GivenName),
		LastName:  strings.TrimSpace(gc.Surname),
		Company:   strings.TrimSpace(gc.CompanyName),
		Mobile:    strings.TrimSpace(gc.MobilePhone),
		Home:      firstNonEmpty(gc.HomePhones),
		Business:  firstNonEmpty(gc.BusinessPhones),
		Email:     strings.TrimSpace(gc.PrimaryEmail()),
		Source:    directory.SourceEntra,
		EntraID:   gc.ID,
	}
	if directory.ValidateEmail("email", c.Email) != nil {
		c.Email = "" // a malformed address does not cost the contact its phone numbers
	}
	if c.FirstName == "" && c.LastName == "" {
		return c, "has no first or last name: fill in at least one in Outlook"
	}
	if c.Mobile == "" && c.Home == "" && c.Business == "" {
		return c, "has no mobile, home or business phone: fill in at least one in Outlook"
	}
	if err := directory.ValidateContact(&c); err != nil {
		var fe *directory.FieldError
		if errors.As(err, &fe) {
			v := map[string]string{"mobile": c.Mobile, "home": c.Home, "business": c.Business}[fe.Field]
			return c, fmt.Sprintf("%s phone %q is not a phone number (digits, spaces, + - ( ) . only)", fe.Field, v)
		}
		return c, err.Error()
	}
	return c, ""
}

func firstNonEmpty(ss []string) string {
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return ""
}

func subject(gc graph.Contact) string {
	for _, s := range []string{gc.DisplayName, strings.TrimSpace(gc.GivenName + " " + gc.Surname), gc.PrimaryEmail(), gc.CompanyName} {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return "contact " + gc.ID
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// Disconnected removes what the contacts sync wrote, for an integration that
// is being disconnected: the synced personal contacts and the synced
// phonebooks (with their visibility grants), the folder states, the last
// report and the settings. They are copies of Outlook data that nothing
// would keep up to date any more. The lead calls it from the disconnect path
// (before or after the extensions are released: extension ids stay).
func (s *Service) Disconnected(ctx context.Context, pbx string) error {
	states, err := s.Store.ListSettings(ctx, pbx, DeltaPrefix)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, raw := range states {
		var st folderState
		if json.Unmarshal(raw, &st) != nil || done[st.Owner] {
			continue
		}
		done[st.Owner] = true
		if ext, ok := strings.CutPrefix(st.Owner, "extension:"); ok {
			if err := s.Store.ReplaceSyncedContacts(ctx, pbx, store.ContactOwner{ExtensionID: ext}, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	pbs, err := s.Store.ListPhonebooks(ctx, pbx)
	if err != nil {
		return err
	}
	for _, p := range pbs {
		if p.Synced() {
			if err := s.Store.DeletePhonebook(ctx, pbx, p.ID, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	keys := append(slices.Collect(maps.Keys(states)), SettingsKey, LastRunKey)
	for _, k := range keys {
		if err := s.Store.UpdateSetting(ctx, pbx, k, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
			return err
		}
	}
	s.audit(ctx, pbx, "contacts-sync", "contacts-sync.removed", fmt.Sprintf("%d folder states, %d owners", len(states), len(done)))
	return nil
}
