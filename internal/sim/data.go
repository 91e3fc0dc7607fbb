package sim

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// rng is the deterministic random source used for generated data.
type rng struct{ *rand.Rand }

func newRNG(seed int64, stream string) *rng {
	h := fnv.New64a()
	h.Write([]byte(stream))
	return &rng{rand.New(rand.NewPCG(uint64(seed), h.Sum64()))}
}

func (r *rng) pick(s []string) string { return s[r.IntN(len(s))] }

// chance reports true with probability p.
func (r *rng) chance(p float64) bool { return r.Float64() < p }

// uuid returns a random (version 4 shaped) GUID from r.
func (r *rng) uuid() string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// outlookID returns an Exchange-looking base64 item id.
func (r *rng) outlookID(prefix string) string {
	b := make([]byte, 0, 48)
	b = append(b, prefix...)
	for range 5 {
		v := r.Uint64()
		for j := range 8 {
			b = append(b, byte(v>>(8*j)))
		}
	}
	return "AAMkAD" + base64.URLEncoding.EncodeToString(b)
}

// user is one directory user. Strings left empty are written as null.
type user struct {
	seq, ver, cver                                         uint64            // cver: version that created (or restored) it
	pver                                                   map[string]uint64 // property -> version of its last change (nil until a PATCH)
	id, upn, displayName, givenName, surname, mail, nick   string
	mobilePhone, jobTitle, department, companyName, office string
	preferredLanguage, employeeID, userType, employeeType  string
	businessPhones                                         []string
	ext                                                    []string // nil or 15 entries
	created                                                int64    // unix seconds
	deletedAt                                              int64    // unix seconds when soft-deleted
	accountEnabled, deleted, shared, globalAdmin, purged   bool
	apiCreated                                             bool  // POST /users: no generated contacts
	presence                                               uint8 // index into presenceStates
}

// group is one directory group.
type group struct {
	seq, ver, cver                                  uint64
	pver                                            map[string]uint64
	id, displayName, description, mail, nick, visib string
	groupTypes                                      []string
	mailEnabled, securityEnabled, deleted           bool
	created                                         int64
	deletedAt                                       int64
	members                                         []string
	memberSet                                       map[string]struct{}
	memberLog                                       []memberChange
}

type memberChange struct {
	ver     uint64
	id      string
	removed bool
}

func (g *group) hasMember(id string) bool { _, ok := g.memberSet[id]; return ok }

func (g *group) addMember(id string, ver uint64) bool {
	if g.hasMember(id) {
		return false
	}
	g.memberSet[id] = struct{}{}
	g.members = append(g.members, id)
	if ver > 0 {
		g.memberLog = append(g.memberLog, memberChange{ver: ver, id: id})
	}
	return true
}

func (g *group) removeMember(id string, ver uint64) bool {
	if !g.hasMember(id) {
		return false
	}
	delete(g.memberSet, id)
	for i, m := range g.members {
		if m == id {
			g.members = append(g.members[:i:i], g.members[i+1:]...)
			break
		}
	}
	g.memberLog = append(g.memberLog, memberChange{ver: ver, id: id, removed: true})
	return true
}

// presenceState is one availability/activity pair.
type presenceState struct{ availability, activity string }

// presenceStates lists the generated Teams states with their weights (graph-facts 6.1).
var presenceStates = []struct {
	presenceState
	weight int
}{
	{presenceState{"Available", "Available"}, 38},
	{presenceState{"Busy", "InACall"}, 8},
	{presenceState{"Busy", "InAMeeting"}, 10},
	{presenceState{"Busy", "Busy"}, 5},
	{presenceState{"DoNotDisturb", "Presenting"}, 3},
	{presenceState{"DoNotDisturb", "DoNotDisturb"}, 4},
	{presenceState{"Away", "Away"}, 10},
	{presenceState{"BeRightBack", "BeRightBack"}, 5},
	{presenceState{"Offline", "OffWork"}, 7},
	{presenceState{"Offline", "Offline"}, 6},
	{presenceState{"Away", "OutOfOffice"}, 2},
	{presenceState{"AvailableIdle", "Inactive"}, 2},
}

func weighted[T any](r *rng, items []T, weight func(T) int) T {
	total := 0
	for _, it := range items {
		total += weight(it)
	}
	x := r.IntN(total)
	for _, it := range items {
		x -= weight(it)
		if x < 0 {
			return it
		}
	}
	return items[len(items)-1]
}

// generate fills s with cfg.Users users and cfg.Groups groups derived from cfg.Seed.
func (s *store) generate(cfg Config) {
	r := newRNG(cfg.Seed, "users")
	base := time.Date(2019, 1, 7, 9, 0, 0, 0, time.UTC).Unix()
	aliases := make(map[string]int, cfg.Users)
	uniq := func(a string) string {
		a = strings.ToLower(a)
		k := aliases[a]
		aliases[a] = k + 1
		if k == 0 {
			return a
		}
		return a + strconv.Itoa(k+1)
	}
	nShared := 0
	if cfg.Users >= 10 {
		nShared = min(2+cfg.Users/500, 12)
	}
	sharedNames := []string{"Reception", "Support", "Sales Desk", "Facilities", "Accounts Payable", "Front Office", "Helpdesk", "Bookings", "Press Office", "IT Service Desk", "Warehouse", "Réception Paris"}
	for i := range cfg.Users {
		loc := weighted(r, locales, func(l struct {
			weight int
			loc    locale
		}) int {
			return l.weight
		}).loc
		gn := loc.given[r.IntN(len(loc.given))]
		sn := loc.surnames[r.IntN(len(loc.surnames))]
		u := &user{id: r.uuid(), accountEnabled: true, userType: "Member", preferredLanguage: loc.lang}
		u.givenName, u.surname = gn.native, sn.native
		if loc.surnameFirst {
			u.displayName = sn.native + gn.native
		} else {
			u.displayName = gn.native + " " + sn.native
		}
		alias := uniq(gn.ascii + "." + sn.ascii)
		u.created = base + int64(i)*3600 + int64(r.IntN(3600))
		switch {
		case i == 0:
			u.givenName, u.surname, u.displayName = "MOD", "Administrator", "MOD Administrator"
			alias = uniq("admin")
			u.globalAdmin = true
			u.jobTitle = "IT Administrator"
			u.department = "IT"
		case i >= 1 && i <= nShared:
			u.displayName = sharedNames[(i-1)%len(sharedNames)]
			u.givenName, u.surname = "", ""
			alias = uniq(fold(strings.ReplaceAll(u.displayName, " ", "")))
			u.shared = true
			u.accountEnabled = false
		case r.chance(0.05):
			dom := r.pick(extDomains)
			u.userType = "Guest"
			u.mail = alias + "@" + dom
			u.upn = alias + "_" + dom + "#EXT#@" + cfg.tenantDomain()
			u.nick = alias + "_" + dom + "#EXT#"
		}
		if u.upn == "" {
			u.upn = alias + "@" + cfg.Domain
			u.mail = u.upn
			u.nick = alias
		}
		if !u.shared && u.userType == "Member" {
			if i != 0 && r.chance(0.02) {
				u.accountEnabled = false
			}
			if u.jobTitle == "" {
				u.jobTitle = r.pick(jobTitles)
				u.department = r.pick(departments)
			}
			u.office = r.pick(offices)
			u.companyName = "Contoso"
			u.employeeID = fmt.Sprintf("E%06d", 1000+i)
			u.employeeType = "Employee"
			if r.chance(0.85) {
				u.mobilePhone = loc.phone(r)
			}
			switch x := r.IntN(100); {
			case x < 55:
				u.businessPhones = []string{fmt.Sprintf("+1 425 555 %04d", r.IntN(10000))}
			case x < 75:
				u.businessPhones = []string{strconv.Itoa(1000 + r.IntN(9000))}
			}
			if r.chance(0.6) {
				u.ext = make([]string, 15)
				u.ext[0] = strconv.Itoa(100 + r.IntN(99900)) // 3-5 digit extension number
				if r.chance(0.3) {
					u.ext[1] = u.department
				}
				if r.chance(0.2) {
					u.ext[14] = strconv.Itoa(1000 + r.IntN(9000))
				}
			}
		}
		u.presence = uint8(pickPresence(r))
		s.insertUser(u, 0)
	}

	gr := newRNG(cfg.Seed, "groups")
	for i := range cfg.Groups {
		topic := groupTopics[i%len(groupTopics)]
		if i >= len(groupTopics) {
			topic = fmt.Sprintf("%s %d", topic, i/len(groupTopics)+1)
		}
		g := &group{id: gr.uuid(), memberSet: map[string]struct{}{}, created: base + int64(i)*86400}
		nick := uniq("grp-" + fold(strings.ReplaceAll(topic, " ", "")))
		if nick == "grp-" {
			nick = uniq(fmt.Sprintf("grp-%d", i))
		}
		switch x := gr.IntN(100); {
		case x < 50:
			g.displayName, g.securityEnabled = topic+" Security", true
			g.groupTypes = []string{}
		case x < 85:
			g.displayName = topic
			g.groupTypes = []string{"Unified"}
			g.mailEnabled = true
			g.visib = "Private"
			if gr.chance(0.5) {
				g.visib = "Public"
			}
		case x < 93:
			g.displayName, g.mailEnabled = topic+" DL", true
			g.groupTypes = []string{}
		default:
			g.displayName, g.mailEnabled, g.securityEnabled = topic+" Mail Security", true, true
			g.groupTypes = []string{}
		}
		g.nick = nick
		if g.mailEnabled {
			g.mail = nick + "@" + cfg.Domain
		}
		g.description = "Members of " + topic
		if cfg.Users > 0 {
			size := min(cfg.Users, 2+gr.IntN(max(3, min(2*cfg.Users/max(cfg.Groups, 1), 400))))
			for range size {
				u := s.users[gr.IntN(len(s.users))]
				if !u.shared {
					g.addMember(u.id, 0)
				}
			}
		}
		// Nest: some security groups contain an earlier security group.
		if g.securityEnabled && len(g.groupTypes) == 0 && !g.mailEnabled && i > 0 && gr.chance(0.3) {
			for _, p := range s.groups {
				if p.securityEnabled && !p.mailEnabled && len(p.groupTypes) == 0 && gr.chance(0.5) {
					g.addMember(p.id, 0)
					break
				}
			}
		}
		s.insertGroup(g, 0)
	}
	s.ver = 1 // generated objects have version 0: a deltaLink from now on sees only changes
}

func pickPresence(r *rng) int {
	total := 0
	for _, p := range presenceStates {
		total += p.weight
	}
	x := r.IntN(total)
	for i, p := range presenceStates {
		x -= p.weight
		if x < 0 {
			return i
		}
	}
	return 0
}
