package contactsync

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"

	"github.com/switchboard-pbx/switchboard/internal/directory"
)

// idSum is the 64-bit FNV-1a hash of a contact id. A folder state records
// the contacts stored from the folder by these sums, not by their ids: an
// Outlook contact id is about 150 characters, its sum 8 bytes, and a run
// holds every folder's state in memory (10,000 mailboxes of 50 contacts:
// 75 MB of ids). The sums only pick, among an owner's stored contacts, those
// that came from a folder; two ids of one owner sharing a sum (odds about
// n²/2⁶⁵ for n contacts) would only make a full re-read of one folder drop
// the other contact until the next run re-reads it.
func idSum(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// idSums is a sorted set of idSum values, stored as one base64 string of
// 8-byte big-endian sums (11 characters a contact).
type idSums []uint64

func sumsOf(ids []string) idSums {
	out := make(idSums, 0, len(ids))
	for _, id := range ids {
		out = append(out, idSum(id))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (s idSums) MarshalJSON() ([]byte, error) {
	b := make([]byte, 8*len(s))
	for i, h := range s {
		binary.BigEndian.PutUint64(b[8*i:], h)
	}
	return json.Marshal(base64.RawURLEncoding.EncodeToString(b))
}

func (s *idSums) UnmarshalJSON(data []byte) error {
	var str string
	if err := json.Unmarshal(data, &str); err != nil {
		return err
	}
	b, err := base64.RawURLEncoding.DecodeString(str)
	if err != nil {
		return err
	}
	if len(b)%8 != 0 {
		return errors.New("contact id sums: length is not a multiple of 8")
	}
	out := make(idSums, len(b)/8)
	for i := range out {
		out[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	slices.Sort(out)
	*s = out
	return nil
}

// owned is one owner's synced contacts during a run: cur is what will be
// stored, by Outlook id; before is what was stored when the run started.
type owned struct {
	cur    map[string]directory.Contact
	before map[string]directory.Contact
	byHash map[uint64]string // ids of before by sum, built on first use
	// read are the ids a folder of this run has put into cur. A contact
	// moved between folders keeps its id (immutable ids): the folder it
	// left must not remove it when the folder it joined was read first.
	read map[string]bool
}

// put stores a contact a folder read.
func (o *owned) put(id string, c directory.Contact) {
	if o.read == nil {
		o.read = map[string]bool{}
	}
	o.cur[id], o.read[id] = c, true
}

// remove removes a contact a folder no longer holds, unless another folder
// of this run holds it now.
func (o *owned) remove(id string) {
	if !o.read[id] {
		delete(o.cur, id)
	}
}

// drop removes from cur the contacts whose ids have a sum in s (the
// contacts a folder state recorded: all of them were stored, so all are in
// before), except those a folder of this run read, and returns how many it
// removed.
func (o *owned) drop(s idSums) int {
	if len(s) == 0 {
		return 0
	}
	if o.byHash == nil {
		o.byHash = make(map[uint64]string, len(o.before))
		for id := range o.before {
			o.byHash[idSum(id)] = id
		}
	}
	n := 0
	for _, h := range s {
		id, ok := o.byHash[h]
		if !ok || o.read[id] {
			continue
		}
		if _, ok := o.cur[id]; ok {
			delete(o.cur, id)
			n++
		}
	}
	return n
}
