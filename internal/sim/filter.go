package sim

import (
	"fmt"
	"strings"
	"unicode"
)

// getter returns a property value: string, bool, []string or nil (null).
type getter func(prop string) any

// filterNode is a parsed $filter expression.
type filterNode interface{ eval(get getter) bool }

// filter is a parsed $filter with what Graph needs to know about it.
type filter struct {
	root     filterNode
	advanced bool     // ne, not or endswith: needs ConsistencyLevel eventual + $count
	props    []string // properties used
	idsOnly  []string // set when the filter is only "id eq" / "id in" clauses (delta)
}

type tok struct {
	kind byte // 'i' ident, 's' string, 'p' punctuation
	s    string
}

func lex(src string) ([]tok, error) {
	var out []tok
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')' || c == ',' || c == ':':
			out = append(out, tok{'p', string(c)})
			i++
		case c == '\'':
			var b strings.Builder
			i++
			for {
				if i >= len(src) {
					return nil, fmt.Errorf("unterminated string literal")
				}
				if src[i] == '\'' {
					if i+1 < len(src) && src[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(src[i])
				i++
			}
			out = append(out, tok{'s', b.String()})
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t(),:'", rune(src[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("unexpected character %q", c)
			}
			out = append(out, tok{'i', src[i:j]})
			i = j
		}
	}
	return out, nil
}

type parser struct {
	toks    []tok
	pos     int
	allowed map[string]bool // lower-case property names; nil allows all
	f       *filter
	lambda  string
}

func (p *parser) peek() tok {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return tok{}
}

func (p *parser) next() tok { t := p.peek(); p.pos++; return t }

func (p *parser) expect(s string) error {
	if t := p.next(); t.s != s || t.kind == 's' {
		return fmt.Errorf("expected %q", s)
	}
	return nil
}

func isKw(t tok, kw string) bool { return t.kind == 'i' && strings.EqualFold(t.s, kw) }

// parseFilter parses src; allowed restricts the properties (lower-case names).
func parseFilter(src string, allowed map[string]bool) (*filter, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	f := &filter{}
	p := &parser{toks: toks, allowed: allowed, f: f}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(toks) {
		return nil, fmt.Errorf("syntax error at position %d in '%s'", p.pos, src)
	}
	f.root = n
	return f, nil
}

type orNode []filterNode
type andNode []filterNode
type notNode struct{ n filterNode }

func (o orNode) eval(g getter) bool {
	for _, n := range o {
		if n.eval(g) {
			return true
		}
	}
	return false
}
func (a andNode) eval(g getter) bool {
	for _, n := range a {
		if !n.eval(g) {
			return false
		}
	}
	return true
}
func (x notNode) eval(g getter) bool { return !x.n.eval(g) }

func (p *parser) or() (filterNode, error) {
	n, err := p.and()
	if err != nil {
		return nil, err
	}
	out := orNode{n}
	for isKw(p.peek(), "or") {
		p.next()
		m, err := p.and()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if len(out) == 1 {
		return n, nil
	}
	return out, nil
}

func (p *parser) and() (filterNode, error) {
	n, err := p.unary()
	if err != nil {
		return nil, err
	}
	out := andNode{n}
	for isKw(p.peek(), "and") {
		p.next()
		m, err := p.unary()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if len(out) == 1 {
		return n, nil
	}
	return out, nil
}

func (p *parser) unary() (filterNode, error) {
	t := p.peek()
	if isKw(t, "not") {
		p.next()
		p.f.advanced = true
		n, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	}
	if t.kind == 'p' && t.s == "(" {
		p.next()
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		return n, p.expect(")")
	}
	return p.primary()
}

func (p *parser) prop(name string) error {
	if p.lambda != "" && (name == p.lambda || strings.HasPrefix(name, p.lambda+"/")) {
		return nil
	}
	base, _, _ := strings.Cut(name, "/")
	if p.allowed != nil && !p.allowed[strings.ToLower(base)] {
		return &unsupportedProp{name}
	}
	p.f.props = append(p.f.props, base)
	return nil
}

type unsupportedProp struct{ name string }

func (e *unsupportedProp) Error() string {
	return fmt.Sprintf("Unsupported or invalid query filter clause specified for property '%s'.", e.name)
}

// literal parses a value token: string, true/false/null, number, GUID.
func (p *parser) literal() (any, error) {
	t := p.next()
	switch {
	case t.kind == 's':
		return t.s, nil
	case isKw(t, "true"):
		return true, nil
	case isKw(t, "false"):
		return false, nil
	case isKw(t, "null"):
		return nil, nil
	case t.kind == 'i':
		return t.s, nil
	}
	return nil, fmt.Errorf("expected a literal")
}

type cmpNode struct {
	prop, op string
	val      any
	lambda   string
}

type inNode struct {
	prop string
	vals []any
}

type funcNode struct {
	fn, prop, arg string
	lambda        string
}

type anyNode struct {
	prop, v string
	body    filterNode
}

func resolve(g getter, prop, lambda string, elem any) any {
	if lambda != "" && (prop == lambda || strings.HasPrefix(prop, lambda+"/")) {
		return elem
	}
	return g(prop)
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && strings.EqualFold(x, y)
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	}
	return false
}

func (c cmpNode) eval(g getter) bool { return c.evalElem(g, nil) }

func (c cmpNode) evalElem(g getter, elem any) bool {
	v := resolve(g, c.prop, c.lambda, elem)
	if s, ok := v.(string); ok && s == "" {
		v = nil
	}
	switch c.op {
	case "eq":
		return equal(v, c.val)
	case "ne":
		return !equal(v, c.val)
	case "ge", "le", "gt", "lt":
		a, ok1 := v.(string)
		b, ok2 := c.val.(string)
		if !ok1 || !ok2 {
			return false
		}
		k := strings.Compare(strings.ToLower(a), strings.ToLower(b))
		switch c.op {
		case "ge":
			return k >= 0
		case "le":
			return k <= 0
		case "gt":
			return k > 0
		}
		return k < 0
	}
	return false
}

func (x inNode) eval(g getter) bool {
	v := g(x.prop)
	for _, w := range x.vals {
		if equal(v, w) {
			return true
		}
	}
	return false
}

func (f funcNode) eval(g getter) bool { return f.evalElem(g, nil) }

func (f funcNode) evalElem(g getter, elem any) bool {
	s, _ := resolve(g, f.prop, f.lambda, elem).(string)
	s, a := strings.ToLower(s), strings.ToLower(f.arg)
	switch f.fn {
	case "startswith":
		return strings.HasPrefix(s, a)
	case "endswith":
		return strings.HasSuffix(s, a)
	}
	return strings.Contains(s, a)
}

type elemEval interface{ evalElem(g getter, elem any) bool }

func (a anyNode) eval(g getter) bool {
	list, _ := g(a.prop).([]string)
	if a.body == nil {
		return len(list) > 0
	}
	for _, e := range list {
		if evalWith(a.body, g, e) {
			return true
		}
	}
	return false
}

func evalWith(n filterNode, g getter, elem any) bool {
	switch x := n.(type) {
	case elemEval:
		return x.evalElem(g, elem)
	case orNode:
		for _, m := range x {
			if evalWith(m, g, elem) {
				return true
			}
		}
		return false
	case andNode:
		for _, m := range x {
			if !evalWith(m, g, elem) {
				return false
			}
		}
		return true
	case notNode:
		return !evalWith(x.n, g, elem)
	}
	return n.eval(g)
}

func (p *parser) primary() (filterNode, error) {
	t := p.next()
	if t.kind != 'i' {
		return nil, fmt.Errorf("expected a property or function")
	}
	lname := strings.ToLower(t.s)
	// Functions: startswith(prop,'x'), endswith(prop,'x').
	if (lname == "startswith" || lname == "endswith" || lname == "contains") && p.peek().s == "(" {
		p.next()
		pt := p.next()
		if pt.kind != 'i' {
			return nil, fmt.Errorf("expected a property in %s", t.s)
		}
		if err := p.prop(pt.s); err != nil {
			return nil, err
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
		at := p.next()
		if at.kind != 's' {
			return nil, fmt.Errorf("expected a string in %s", t.s)
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		if lname != "startswith" {
			p.f.advanced = true
		}
		if lname == "contains" {
			return nil, &unsupportedProp{pt.s}
		}
		fn := funcNode{fn: lname, prop: pt.s, arg: at.s, lambda: p.lambda}
		if isKw(p.peek(), "eq") { // startswith(x,'a') eq true
			p.next()
			v, err := p.literal()
			if err != nil {
				return nil, err
			}
			if v == false {
				p.f.advanced = true
				return notNode{fn}, nil
			}
		}
		return fn, nil
	}
	// Lambda: prop/any(v:body).
	if strings.HasSuffix(lname, "/any") || strings.HasSuffix(lname, "/all") {
		prop := t.s[:len(t.s)-4]
		if err := p.prop(prop); err != nil {
			return nil, err
		}
		if err := p.expect("("); err != nil {
			return nil, err
		}
		if p.peek().s == ")" {
			p.next()
			return anyNode{prop: prop}, nil
		}
		vt := p.next()
		if err := p.expect(":"); err != nil {
			return nil, err
		}
		outer := p.lambda
		p.lambda = vt.s
		body, err := p.or()
		p.lambda = outer
		if err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return anyNode{prop: prop, v: vt.s, body: body}, nil
	}
	if err := p.prop(t.s); err != nil {
		return nil, err
	}
	op := p.next()
	switch o := strings.ToLower(op.s); o {
	case "eq", "ne", "ge", "le", "gt", "lt":
		if o == "ne" {
			p.f.advanced = true
		}
		v, err := p.literal()
		if err != nil {
			return nil, err
		}
		if v == nil && p.lambda == "" {
			p.f.advanced = true
		}
		return cmpNode{prop: t.s, op: o, val: v, lambda: p.lambda}, nil
	case "in":
		if err := p.expect("("); err != nil {
			return nil, err
		}
		var vals []any
		for {
			v, err := p.literal()
			if err != nil {
				return nil, err
			}
			vals = append(vals, v)
			if p.peek().s == ")" {
				p.next()
				break
			}
			if err := p.expect(","); err != nil {
				return nil, err
			}
		}
		return inNode{prop: t.s, vals: vals}, nil
	}
	return nil, fmt.Errorf("invalid filter clause near '%s'", op.s)
}

// filterIDs returns the ids when f only selects by id (id eq 'x' or id eq 'y', id in (...)).
func filterIDs(n filterNode) ([]string, bool) {
	switch x := n.(type) {
	case cmpNode:
		if strings.EqualFold(x.prop, "id") && x.op == "eq" {
			s, ok := x.val.(string)
			return []string{s}, ok
		}
	case inNode:
		if strings.EqualFold(x.prop, "id") {
			var out []string
			for _, v := range x.vals {
				s, ok := v.(string)
				if !ok {
					return nil, false
				}
				out = append(out, s)
			}
			return out, true
		}
	case orNode:
		var out []string
		for _, m := range x {
			ids, ok := filterIDs(m)
			if !ok {
				return nil, false
			}
			out = append(out, ids...)
		}
		return out, true
	}
	return nil, false
}

// searchTerm is one "property:text" clause of $search.
type searchTerm struct{ prop, text string }

// parseSearch parses `"displayName:wa" OR "mail:x" AND ...` (OR of AND-groups).
func parseSearch(s string) ([][]searchTerm, error) {
	var groups [][]searchTerm
	var cur []searchTerm
	s = strings.TrimSpace(s)
	for s != "" {
		if s[0] != '"' {
			word, rest, _ := strings.Cut(s, " ")
			switch strings.ToUpper(word) {
			case "OR":
				groups = append(groups, cur)
				cur = nil
			case "AND":
			default:
				return nil, fmt.Errorf("Syntax error: character '%s' is not valid at position 0 in '%s'.", word, s)
			}
			s = strings.TrimSpace(rest)
			continue
		}
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("unterminated search clause")
		}
		clause := s[1 : end+1]
		prop, text, ok := strings.Cut(clause, ":")
		if !ok {
			return nil, fmt.Errorf("Invalid search clause '%s': expected \"property:text\".", clause)
		}
		cur = append(cur, searchTerm{prop, text})
		s = strings.TrimSpace(s[end+2:])
	}
	groups = append(groups, cur)
	return groups, nil
}

// searchMatch reports whether any word of v starts with text (Graph tokenises on spaces
// and punctuation, case-insensitively).
func searchMatch(v, text string) bool {
	v, text = strings.ToLower(v), strings.ToLower(text)
	if strings.HasPrefix(v, text) {
		return true
	}
	words := strings.FieldsFunc(v, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	for _, w := range words {
		if strings.HasPrefix(w, text) {
			return true
		}
	}
	return false
}
