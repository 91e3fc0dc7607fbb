package sim

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// gerr is a Graph error to be written by the handler.
type gerr struct {
	status    int
	code, msg string
}

func (e *gerr) Error() string { return e.code + ": " + e.msg }

func badRequest(code, format string, args ...any) *gerr {
	return &gerr{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
}

func notFound(id string) *gerr {
	return &gerr{http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", id)}
}

func (t *Tenant) fail(w http.ResponseWriter, r *http.Request, e *gerr) {
	t.graphError(w, r, e.status, e.code, e.msg)
}

// kind describes a directory collection for query parsing.
type kind struct {
	name      string // "user", "group", "directoryObject"
	props     []string
	defaults  []string
	canon     map[string]string
	filterOK  map[string]bool
	isList    bool
	typeCheck func(e entry) bool
}

var (
	userKind  = kind{name: "user", props: userProps, defaults: defaultUserProps, canon: canonUser, filterOK: userFilter}
	groupKind = kind{name: "group", props: groupProps, defaults: groupProps, canon: canonGroup, filterOK: groupFilter}
	dirKind   = kind{name: "directoryObject", canon: mergeCanon(canonUser, canonGroup), filterOK: mergeSet(userFilter, groupFilter)}
)

func mergeCanon(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func mergeSet(a, b map[string]bool) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

// query holds parsed OData query options.
type query struct {
	sel      []string // canonical names, nil: defaults
	top      int
	filter   *filter
	orderBy  string
	desc     bool
	search   [][]searchTerm
	count    bool
	eventual bool
	skip     string // decoded $skiptoken
	byOffset bool   // page by position even without $orderby/$search
	raw      url.Values
}

func parseQuery(r *http.Request, k kind, list bool) (*query, *gerr) {
	raw := r.URL.Query()
	q := &query{top: 100, raw: raw, eventual: strings.EqualFold(r.Header.Get("ConsistencyLevel"), "eventual")}
	for key := range raw {
		switch strings.ToLower(key) {
		case "$select", "$top", "$filter", "$orderby", "$search", "$count", "$skiptoken", "$expand", "$format", "$deltatoken":
		case "$skip":
			return nil, badRequest("Request_BadRequest", "'$skip' is not supported by the service.")
		default:
			if strings.HasPrefix(key, "$") {
				return nil, badRequest("BadRequest", "Query option '%s' is not allowed. To use it, remove the '$' prefix or use a supported query option.", key)
			}
		}
	}
	get := func(name string) string {
		for key, v := range raw {
			if strings.EqualFold(key, name) && len(v) > 0 {
				return v[0]
			}
		}
		return ""
	}
	if s := get("$select"); s != "" {
		for _, p := range strings.Split(s, ",") {
			p = strings.TrimSpace(p)
			if list && k.name == "user" && singleOnly[strings.ToLower(p)] {
				return nil, &gerr{http.StatusNotImplemented, "NotImplemented", fmt.Sprintf("This operation target is not yet supported. Property '%s' is only returned on a single user request.", p)}
			}
			c, ok := k.canon[strings.ToLower(p)]
			if !ok {
				if k.name == "user" && strings.EqualFold(p, "mailboxSettings") {
					c = "mailboxSettings"
				} else {
					return nil, badRequest("Request_BadRequest", "Could not find a property named '%s' on type 'microsoft.graph.%s'.", p, k.name)
				}
			}
			if !slices.Contains(q.sel, c) {
				q.sel = append(q.sel, c)
			}
		}
	}
	if s := get("$top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 999 {
			return nil, badRequest("Request_UnsupportedQuery", "Invalid page size specified: '%s'. Must be between 1 and 999 inclusive.", s)
		}
		q.top = n
	}
	if s := get("$count"); s != "" {
		switch strings.ToLower(s) {
		case "true":
			q.count = true
		case "false":
		default:
			return nil, badRequest("Request_BadRequest", "Invalid value '%s' for $count.", s)
		}
		if q.count && !q.eventual {
			return nil, badRequest("Request_BadRequest", "$count is not currently supported.")
		}
	}
	if s := get("$filter"); s != "" {
		f, err := parseFilter(s, k.filterOK)
		if err != nil {
			return nil, badRequest("Request_UnsupportedQuery", "%s", err.Error())
		}
		if f.advanced && !(q.eventual && q.count) {
			return nil, badRequest("Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified for property '%s' of resource '%s'.", firstOr(f.props, "unknown"), upperFirst(k.name))
		}
		q.filter = f
	}
	if s := get("$search"); s != "" {
		if !q.eventual {
			return nil, badRequest("Request_BadRequest", "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'")
		}
		groups, err := parseSearch(s)
		if err != nil {
			return nil, badRequest("Request_UnsupportedQuery", "%s", err.Error())
		}
		for _, g := range groups {
			for _, t := range g {
				if _, ok := k.canon[strings.ToLower(t.prop)]; !ok {
					return nil, badRequest("Request_UnsupportedQuery", "Unsupported search property '%s'.", t.prop)
				}
			}
		}
		q.search = groups
	}
	if s := get("$orderby"); s != "" {
		prop, dir, _ := strings.Cut(strings.TrimSpace(s), " ")
		c, ok := k.canon[strings.ToLower(prop)]
		if !ok || (c != "displayName" && c != "userPrincipalName" && c != "mail" && c != "createdDateTime") {
			return nil, badRequest("Request_UnsupportedQuery", "Sorting not supported for '%s'.", prop)
		}
		q.orderBy = c
		q.desc = strings.EqualFold(strings.TrimSpace(dir), "desc")
		if (q.filter != nil || q.desc) && !(q.eventual && q.count) {
			return nil, badRequest("Request_UnsupportedQuery", "Sorting not supported for current query.")
		}
	}
	if s := get("$skiptoken"); s != "" {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, badRequest("Directory_ExpiredPageToken", "The specified page token value has expired and can no longer be included in your request.")
		}
		q.skip = string(b)
	}
	return q, nil
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (q *query) match(e entry) bool {
	if (e.u != nil && e.u.deleted) || (e.g != nil && e.g.deleted) {
		return false
	}
	if q.filter != nil && !q.filter.root.eval(e.get) {
		return false
	}
	if q.search != nil {
		ok := false
		for _, g := range q.search {
			all := true
			for _, term := range g {
				s, _ := e.get(term.prop).(string)
				if !searchMatch(s, term.text) {
					all = false
					break
				}
			}
			if all {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// nextLink builds the link to the next page: the request's own query plus $skiptoken.
func (t *Tenant) nextLink(r *http.Request, path string, q url.Values, token string) string {
	v := url.Values{}
	for k, vals := range q {
		if strings.EqualFold(k, "$skiptoken") || strings.EqualFold(k, "$deltatoken") {
			continue
		}
		v[k] = vals
	}
	enc := encodeQuery(v)
	if enc != "" {
		enc += "&"
	}
	return t.baseURL(r) + path + "?" + enc + "$skiptoken=" + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// encodeQuery encodes v keeping '$' readable as Graph does.
func encodeQuery(v url.Values) string {
	return strings.ReplaceAll(v.Encode(), "%24", "$")
}

// contextURL returns the @odata.context value for a collection or entity.
func (t *Tenant) contextURL(r *http.Request, set string, sel []string, entity bool) string {
	s := t.baseURL(r) + "/v1.0/$metadata#" + set
	if len(sel) > 0 {
		s += "(" + strings.Join(sel, ",") + ")"
	}
	if entity {
		s += "/$entity"
	}
	return s
}

// listPage writes one page of entries. items are in seq order; withType adds @odata.type
// (directoryObject collections). The caller holds the store's read lock.
func (t *Tenant) listPage(w http.ResponseWriter, r *http.Request, q *query, items []entry, k kind, set string, withType bool) {
	props := q.sel
	if props == nil {
		props = k.defaults
		if k.name == "directoryObject" {
			props = nil
		}
	}
	var page []entry
	more := false
	count := -1
	cursor := ""
	if q.orderBy == "" && q.search == nil && !q.byOffset {
		var after uint64
		if s, ok := strings.CutPrefix(q.skip, "seq:"); ok {
			after, _ = strconv.ParseUint(s, 10, 64)
		}
		start := searchSeq(items, after)
		if q.count {
			count = 0
			for _, e := range items {
				if q.match(e) {
					count++
				}
			}
		}
		for i := start; i < len(items); i++ {
			if !q.match(items[i]) {
				continue
			}
			if len(page) == q.top {
				more = true
				break
			}
			page = append(page, items[i])
		}
		if more {
			cursor = "seq:" + strconv.FormatUint(page[len(page)-1].seq(), 10)
		}
	} else {
		var all []entry
		for _, e := range items {
			if q.match(e) {
				all = append(all, e)
			}
		}
		count = len(all)
		if q.orderBy != "" {
			key := func(e entry) string { s, _ := e.get(q.orderBy).(string); return strings.ToLower(s) }
			slices.SortStableFunc(all, func(a, b entry) int {
				c := strings.Compare(key(a), key(b))
				if q.desc {
					return -c
				}
				return c
			})
		}
		off := 0
		if s, ok := strings.CutPrefix(q.skip, "off:"); ok {
			off, _ = strconv.Atoi(s)
		}
		off = min(off, len(all))
		end := min(off+q.top, len(all))
		page = all[off:end]
		if end < len(all) {
			more = true
			cursor = "off:" + strconv.Itoa(end)
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer func() { bufPool.Put(bp) }()
	b := (*bp)[:0]
	b = append(b, `{"@odata.context":`...)
	b = appendString(b, t.contextURL(r, set, q.sel, false))
	if q.count && q.skip == "" && count >= 0 {
		b = append(b, `,"@odata.count":`...)
		b = strconv.AppendInt(b, int64(count), 10)
	}
	if more {
		b = append(b, `,"@odata.nextLink":`...)
		b = appendString(b, t.nextLink(r, r.URL.Path, q.raw, cursor))
	}
	b = append(b, `,"value":[`...)
	for i, e := range page {
		if i > 0 {
			b = append(b, ',')
		}
		p := props
		if p == nil {
			if e.u != nil {
				p = defaultUserProps
			} else {
				p = groupProps
			}
		}
		b = appendEntry(b, e, p, withType)
	}
	b = append(b, "]}"...)
	writeRaw(w, http.StatusOK, b)
	if cap(b) <= 16<<20 {
		*bp = b
	}
}

// bufPool recycles response buffers of list pages (a 999-user page is about 1 MB).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func searchSeq(items []entry, after uint64) int {
	lo, hi := 0, len(items)
	for lo < hi {
		m := (lo + hi) / 2
		if items[m].seq() > after {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}
