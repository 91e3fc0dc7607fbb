package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ListOptions are the OData query options of a collection read.
type ListOptions struct {
	Select  []string // $select
	Filter  string   // $filter
	Search  string   // $search, as Graph expects it: `"displayName:wa"` (implies ConsistencyLevel: eventual)
	OrderBy string   // $orderby
	Expand  string   // $expand
	Top     int      // $top: page size (users/groups max 999)
	// Count adds $count=true and ConsistencyLevel: eventual (advanced query).
	Count bool
	// Advanced sends ConsistencyLevel: eventual and $count=true even without Count.
	Advanced bool
	// MaxPageSize sends Prefer: odata.maxpagesize (Outlook).
	MaxPageSize int
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if len(o.Select) > 0 {
		q.Set("$select", strings.Join(o.Select, ","))
	}
	if o.Filter != "" {
		q.Set("$filter", o.Filter)
	}
	if o.Search != "" {
		q.Set("$search", o.Search)
	}
	if o.OrderBy != "" {
		q.Set("$orderby", o.OrderBy)
	}
	if o.Expand != "" {
		q.Set("$expand", o.Expand)
	}
	if o.Top > 0 {
		q.Set("$top", strconv.Itoa(o.Top))
	}
	if o.Count || o.Advanced {
		q.Set("$count", "true")
	}
	return q
}

func (o ListOptions) opts(extra []RequestOption) []RequestOption {
	var out []RequestOption
	if o.Count || o.Advanced || o.Search != "" {
		out = append(out, WithConsistencyEventual())
	}
	if o.MaxPageSize > 0 {
		out = append(out, WithMaxPageSize(o.MaxPageSize))
	}
	return append(out, extra...)
}

// Page is one page of a collection.
type Page[T any] struct {
	Items     []T
	NextLink  string // @odata.nextLink: more pages follow (even if Items is empty)
	DeltaLink string // @odata.deltaLink: the round is complete (delta only)
	Count     int64  // @odata.count, -1 when absent (first page only, with $count=true)
}

type wirePage[T any] struct {
	NextLink  string `json:"@odata.nextLink"`
	DeltaLink string `json:"@odata.deltaLink"`
	Count     *int64 `json:"@odata.count"`
	Value     []T    `json:"value"`
}

// DecodePage decodes a collection body (useful for $batch bodies and tests).
func DecodePage[T any](b []byte) (*Page[T], error) {
	var w wirePage[T]
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	p := &Page[T]{Items: w.Value, NextLink: w.NextLink, DeltaLink: w.DeltaLink, Count: -1}
	if w.Count != nil {
		p.Count = *w.Count
	}
	return p, nil
}

// GetPage fetches one page: pathOrLink is a path relative to /v1.0 (with q) or a
// nextLink/deltaLink followed verbatim (q should then be nil). Pickers use it with the
// nextLink as cursor.
func GetPage[T any](ctx context.Context, c *Client, pathOrLink string, q url.Values, opts ...RequestOption) (*Page[T], error) {
	var w wirePage[T]
	if err := getPageInto(ctx, c, pathOrLink, q, opts, &w); err != nil {
		return nil, err
	}
	p := &Page[T]{Items: w.Value, NextLink: w.NextLink, DeltaLink: w.DeltaLink, Count: -1}
	if w.Count != nil {
		p.Count = *w.Count
	}
	return p, nil
}

// getPageInto decodes one page into w. When w.Value has capacity it is zeroed and
// reused (the caller must not keep the previous page's slice).
func getPageInto[T any](ctx context.Context, c *Client, pathOrLink string, q url.Values, opts []RequestOption, w *wirePage[T]) error {
	resp, err := c.call(ctx, http.MethodGet, pathOrLink, q, nil, opts)
	if err != nil {
		return err
	}
	defer resp.release()
	clear(w.Value[:cap(w.Value)])
	w.Value = w.Value[:0]
	w.NextLink, w.DeltaLink, w.Count = "", "", nil
	if lw, ok := any(w).(*wirePage[leanUser]); ok {
		if decodeUserPage(resp.bytes(), lw) {
			return nil
		}
		// Not the plain shape decodeUserPage reads: start again with encoding/json.
		clear(w.Value[:cap(w.Value)])
		w.Value = w.Value[:0]
		w.NextLink, w.DeltaLink, w.Count = "", "", nil
	}
	if err := json.Unmarshal(resp.bytes(), w); err != nil && !inItem(err) {
		return fmt.Errorf("graph: GET %s: decode page: %w", stripQuery(pathOrLink), err)
	}
	return nil
}

// inItem reports a type error inside one item of "value" (a property of an
// unexpected JSON type): the decoder skipped that property and decoded the
// rest, so the page stands, as it does for types with a tolerant UnmarshalJSON.
// A "value" that is not an array is not tolerated.
func inItem(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te) && strings.HasPrefix(te.Field, "value.")
}

// ForEachPage reads a collection page by page, calling fn for each, following
// @odata.nextLink verbatim (re-sending the opts headers on every page). Only one page is
// held at a time. An error from fn stops the walk and is returned as is.
func ForEachPage[T any](ctx context.Context, c *Client, path string, q url.Values, fn func(*Page[T]) error, opts ...RequestOption) error {
	link := path
	for {
		p, err := GetPage[T](ctx, c, link, q, opts...)
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
		if p.NextLink == "" {
			return nil
		}
		link, q = p.NextLink, nil
	}
}

// List returns an iterator over every item of a collection. The next page is fetched
// only when the previous one has been consumed, into the same backing array, so memory
// stays at one page whatever the collection size; breaking out of the loop stops paging.
// An error is yielded once, as the last element.
func List[T any](ctx context.Context, c *Client, path string, opt ListOptions, extra ...RequestOption) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var w wirePage[T]
		link, q, opts := path, opt.query(), opt.opts(extra)
		for {
			if err := getPageInto(ctx, c, link, q, opts, &w); err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range w.Value {
				if !yield(it, nil) {
					return
				}
			}
			if w.NextLink == "" {
				return
			}
			link, q = w.NextLink, nil
		}
	}
}

// DeltaPage is one page of a delta round.
type DeltaPage[T any] struct {
	Items     []T
	NextLink  string // set while more pages follow in this round
	DeltaLink string // set on the last page of the round
}

// Delta runs one delta round. With link == "" it starts a full read at initialPath with
// q; otherwise it follows the stored link (a deltaLink, or a nextLink to resume). fn is
// called for every page in order. The returned deltaLink is the one on the last page,
// returned only when every fn call succeeded; store it only after storing what the
// pages carried. An expired delta token yields an error matching ErrResyncRequired.
func Delta[T any](ctx context.Context, c *Client, initialPath string, q url.Values, link string, fn func(DeltaPage[T]) error, opts ...RequestOption) (string, error) {
	next := link
	if next == "" {
		next = initialPath
	} else {
		q = nil
	}
	for {
		p, err := GetPage[T](ctx, c, next, q, opts...)
		if err != nil {
			return "", err
		}
		q = nil
		if p.NextLink == "" && p.DeltaLink == "" {
			return "", fmt.Errorf("graph: delta page without nextLink or deltaLink (%s)", stripQuery(next))
		}
		if err := fn(DeltaPage[T]{Items: p.Items, NextLink: p.NextLink, DeltaLink: p.DeltaLink}); err != nil {
			return "", err
		}
		if p.DeltaLink != "" {
			return p.DeltaLink, nil
		}
		next = p.NextLink
	}
}
