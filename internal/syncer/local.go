package syncer

import (
	"context"
	"errors"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// local is the PBX's extensions as the planner sees them. An eager local
// holds every extension (full reads need them all: anything synced that the
// read did not return is examined). A lazy local (delta runs) looks records
// up one by one in the store and caches them, so that an incremental run
// after a few changes does not load 100,000 extensions.
type local struct {
	eager bool
	// eager: complete indexes; lazy: caches where a nil value means "known absent".
	byID, byEntra, byNumber, byEmail map[string]*directory.Extension
	synced, total                    int
	syncedKnown                      bool

	ctx context.Context
	st  store.Store
	pbx string
	err error // the first store error of a lazy lookup
}

func newLocal(n int) *local {
	return &local{eager: true, syncedKnown: true, byID: make(map[string]*directory.Extension, n), byEntra: make(map[string]*directory.Extension, n),
		byNumber: make(map[string]*directory.Extension, n), byEmail: make(map[string]*directory.Extension, n)}
}

func newLazyLocal(ctx context.Context, st store.Store, pbx string) (*local, error) {
	n, err := st.CountExtensions(ctx, pbx)
	if err != nil {
		return nil, err
	}
	return &local{ctx: ctx, st: st, pbx: pbx, total: n, byID: map[string]*directory.Extension{}, byEntra: map[string]*directory.Extension{},
		byNumber: map[string]*directory.Extension{}, byEmail: map[string]*directory.Extension{}}, nil
}

func (l *local) add(e *directory.Extension) {
	l.byID[e.ID] = e
	l.byNumber[e.Number] = e
	if e.Email != "" {
		l.byEmail[directory.NormalizeEmail(e.Email)] = e
	}
	if e.Synced() {
		l.byEntra[e.EntraID] = e
		if l.eager {
			l.synced++
		}
	}
	if l.eager {
		l.total++
	}
}

func (l *local) find(cache map[string]*directory.Extension, by, key string) *directory.Extension {
	if key == "" {
		return nil
	}
	if e, ok := cache[key]; ok || l.eager {
		return e
	}
	var e *directory.Extension
	var err error
	if by == "id" {
		e, err = l.st.GetExtension(l.ctx, l.pbx, key)
	} else {
		e, err = l.st.FindExtension(l.ctx, l.pbx, by, key)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		cache[key] = nil
		return nil
	case err != nil:
		if l.err == nil {
			l.err = err
		}
		return nil
	}
	if old := l.byID[e.ID]; old != nil {
		e = old // one record per extension, whichever index found it first
	}
	l.add(e)
	return e
}

func (l *local) entra(id string) *directory.Extension { return l.find(l.byEntra, "entraId", id) }
func (l *local) id(id string) *directory.Extension    { return l.find(l.byID, "id", id) }
func (l *local) number(n string) *directory.Extension { return l.find(l.byNumber, "number", n) }
func (l *local) email(m string) *directory.Extension {
	return l.find(l.byEmail, "email", directory.NormalizeEmail(m))
}

// syncedCount is the number of synced extensions (counted on demand when lazy).
func (l *local) syncedCount() (int, error) {
	if l.syncedKnown {
		return l.synced, nil
	}
	n := 0
	err := l.st.ListAllExtensions(l.ctx, l.pbx, func(e *directory.Extension) error {
		if e.Synced() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	l.synced, l.syncedKnown = n, true
	return n, nil
}
