package syncer

import (
	"context"
	"errors"

	"github.com/switchboard-pbx/switchboard/internal/directory"
	"github.com/switchboard-pbx/switchboard/internal/store"
)

// itemError reports whether err concerns one record (so the rest of its
// batch can still be applied one by one).
func itemError(err error) bool {
	var fe *directory.FieldError
	var le *directory.LockedError
	return errors.As(err, &fe) || errors.As(err, &le) || errors.Is(err, store.ErrConflict) ||
		errors.Is(err, directory.ErrCapacity) || errors.Is(err, store.ErrNotFound)
}

// apply writes the plan through pbx.Service in transactions of ApplyBatch
// changes: deletions first (they free numbers, emails and capacity), then
// updates, then creations. A batch refused because of one record is retried
// record by record and the refused ones are reported as skipped. It returns
// the created extensions.
//
// Unless keepCreated (welcome emails), applied records are let go batch by
// batch, so that a 100,000-user first sync does not hold them all to the end.
func (e *Engine) apply(ctx context.Context, pbx string, fl *inflight, w *Run, pl *plan, keepCreated bool) ([]*directory.Extension, error) {
	var created []*directory.Extension
	batch := 0
	count := func(a Action) {
		switch a.Op {
		case OpCreate:
			w.Created++
			if keepCreated {
				created = append(created, a.ext)
			}
		case OpUpdate:
			w.Updated++
		case OpBind:
			w.Bound++
		case OpRelease:
			w.Released++
		case OpDelete:
			w.Deleted++
		}
	}
	changes := func(acts []Action) store.ExtensionChanges {
		var c store.ExtensionChanges
		for _, a := range acts {
			switch a.Op {
			case OpCreate:
				c.Create = append(c.Create, a.ext)
			case OpDelete:
				c.Delete = append(c.Delete, a.ExtensionID)
			default:
				c.Update = append(c.Update, a.ext)
			}
		}
		return c
	}
	size := e.batchSize()
	for _, group := range [][]Action{pl.deletes, pl.updates, pl.creates} {
		for start := 0; start < len(group); start += size {
			acts := group[start:min(start+size, len(group))]
			if e.BeforeApplyBatch != nil {
				e.BeforeApplyBatch(w, batch)
			}
			batch++
			err := e.PBX.ApplyExtensions(ctx, pbx, changes(acts))
			switch {
			case err == nil:
				for _, a := range acts {
					count(a)
				}
			case itemError(err):
				for _, a := range acts {
					if err := e.PBX.ApplyExtensions(ctx, pbx, changes([]Action{a})); err != nil {
						if !itemError(err) {
							return created, err
						}
						w.skip(a.Subject, a.EntraID, "not applied ("+a.Op+"): "+err.Error())
						continue
					}
					count(a)
				}
			default:
				return created, err
			}
			for i := range acts {
				acts[i].ext = nil
			}
			e.progress(fl, func(r *Run) {
				r.Created, r.Updated, r.Bound, r.Released, r.Deleted = w.Created, w.Updated, w.Bound, w.Released, w.Deleted
			})
		}
	}
	return created, nil
}
