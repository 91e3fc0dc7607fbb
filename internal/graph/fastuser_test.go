package graph

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// stdUserPage decodes b as getPageInto's encoding/json path does.
func stdUserPage(b []byte) (wirePage[leanUser], error) {
	var w wirePage[leanUser]
	err := json.Unmarshal(b, &w)
	if err != nil && inItem(err) {
		err = nil
	}
	return w, err
}

// checkFastUserPage asserts that when decodeUserPage accepts b, it decoded
// exactly what encoding/json decodes, and that it refuses what encoding/json
// refuses. It reports whether the fast path accepted.
func checkFastUserPage(t *testing.T, name string, b []byte) bool {
	t.Helper()
	want, stdErr := stdUserPage(b)
	var got wirePage[leanUser]
	ok := decodeUserPage(b, &got)
	if !ok {
		return false
	}
	if stdErr != nil {
		t.Fatalf("%s: fast path accepted what encoding/json refuses (%v): %q", name, stdErr, b)
	}
	// encoding/json reports a type error inside an item but the fast path
	// must then have refused (it never skips a mistyped property).
	var te *json.UnmarshalTypeError
	if err := json.Unmarshal(b, &wirePage[leanUser]{}); err != nil && !jsonAs(err, &te) {
		t.Fatalf("%s: %v", name, err)
	} else if err != nil {
		t.Fatalf("%s: fast path accepted a page with a mistyped property (%v)", name, err)
	}
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		t.Fatalf("%s: fast path decoded\n%s\nencoding/json decoded\n%s", name, gb, wb)
	}
	return true
}

func jsonAs(err error, te **json.UnmarshalTypeError) bool {
	t, ok := err.(*json.UnmarshalTypeError)
	*te = t
	return ok
}

func TestFastUserPageMatchesEncodingJSON(t *testing.T) {
	// Microsoft's documented user pages.
	for _, dir := range []string{"users", "delta"} {
		files, _ := filepath.Glob(filepath.Join(fixtureDir, dir, "user-*.json"))
		if len(files) == 0 {
			t.Fatalf("no user fixtures in %s", dir)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			checkFastUserPage(t, filepath.Base(f), b)
		}
	}
	// A realistic page, as the sync reads it: must take the fast path.
	r := rand.New(rand.NewPCG(1, 2))
	var users []map[string]any
	for i := range 500 {
		u := map[string]any{"id": fmt.Sprintf("%08x-0000-4000-8000-%012x", i, r.Uint64()>>16),
			"displayName": fmt.Sprintf("Zoë O'Brien-%d \"the\" \\ 名前 😀", i), "givenName": "Zoë", "surname": nil,
			"mail": fmt.Sprintf("u%d@contoso.com", i), "userPrincipalName": fmt.Sprintf("u%d@contoso.com", i),
			"businessPhones": []string{"+1 425 555 0109"}, "mobilePhone": nil, "accountEnabled": i%7 != 0,
			"onPremisesExtensionAttributes": map[string]any{"extensionAttribute7": fmt.Sprint(1000 + i), "extensionAttribute8": nil},
			"userType":                      "Member", "jobTitle": "Tab\there\nnewline", "preferredLanguage": "en-US",
			"otherMails": []any{}, "employeeHireDate": 12.5e3, "nested": map[string]any{"a": []any{true, false, nil, -0.5}}}
		if i%50 == 0 {
			u = map[string]any{"id": u["id"], "@removed": map[string]any{"reason": "changed"}}
		}
		users = append(users, u)
	}
	page, _ := json.Marshal(map[string]any{"@odata.context": "x", "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=a%2Bb", "value": users})
	if !checkFastUserPage(t, "generated page", page) {
		t.Fatal("the fast path refused a plain page of 500 users")
	}
	// Shapes the fast path must refuse (encoding/json decides) or get right.
	for _, c := range []struct {
		body string
		fast bool
	}{
		{`{"value":[]}`, true},
		{`{"value":null,"@odata.nextLink":null}`, true},
		{` {"value":[{}]} `, true},
		{`{"value":[{"id":"a","businessPhones":[]}]}`, true},
		{`{"value":[{"id":"a","businessPhones":null}]}`, true},
		{`{"value":[{"id":"a","onPremisesExtensionAttributes":{"extensionAttribute1":"x"},"onPremisesExtensionAttributes":{"extensionAttribute2":"y"}}]}`, true},
		{`{"value":[{"id":"a","d\u0069splayName":"esc\u00e9 \ud83d\ude00"}]}`, true},
		{`{"value":[{"id":"a","@removed":{"reason":"deleted","x":1}}]}`, true},
		{`{"value":[{"id":"a","accountEnabled":null}]}`, true},
		{`{"value":[{"id":"a","unknown":[1,-2,3.5e-3,0,{"k":[]}]}]}`, true},
		{`{"value":[{"id":"a","jobTitle":42}]}`, false},
		{`{"value":[{"ID":"a"}]}`, false},
		{`{"value":[{"id":"a","ſurname":"long s folds to s"}]}`, false},
		{`{"Value":[]}`, false},
		{`{"value":[],"@odata.count":3}`, false},
		{`{"value":[{"id":"a","businessPhones":[null]}]}`, false},
		{`{"value":[{"id":"a","onPremisesExtensionAttributes":{"ExtensionAttribute1":"x"}}]}`, false},
		{`{"value":[],"value":[]}`, false},
		{`{"value":[{"id":"bad \xff utf8"}]}`, false},
		{`{"value":[{"id":"a"}]`, false},
		{`{"value":[{"id":"a"}]} x`, false},
		{`{"value":[{"id":"a",}]}`, false},
		{`{"value":[{"id":"a","n":01}]}`, false},
		{`{"value":[{"id":"a","n":1.}]}`, false},
		{`{"value":[{"id":"a","n":tru}]}`, false},
		{`{"value":"nope"}`, false},
		{`{"value":[{"id":"ctl ` + "\x01" + `"}]}`, false},
		{`{"value":[{"id":"a","deep":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}]}`, false},
	} {
		got := checkFastUserPage(t, c.body, []byte(c.body))
		if got != c.fast {
			t.Errorf("%s: fast path accepted=%v, want %v", c.body, got, c.fast)
		}
	}
}

func FuzzFastUserPage(f *testing.F) {
	for _, s := range []string{`{"value":[{"id":"a","displayName":"x","accountEnabled":true,"businessPhones":["1"],
		"onPremisesExtensionAttributes":{"extensionAttribute3":"7"},"@removed":{"reason":"changed"},"x":[1,{"y":null}]}],
		"@odata.nextLink":"n"}`, `{"value":[]}`, `{"value":[{"id":"\u00e9\n"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFastUserPage(t, "fuzz", b)
	})
}

func BenchmarkDecodeUserPage500(b *testing.B) {
	var users []map[string]any
	for i := range 500 {
		users = append(users, map[string]any{"id": fmt.Sprintf("%08x-0000-4000-8000-000000000000", i), "displayName": fmt.Sprintf("User %d", i),
			"givenName": "User", "surname": fmt.Sprint(i), "mail": fmt.Sprintf("u%d@contoso.com", i), "userPrincipalName": fmt.Sprintf("u%d@contoso.com", i),
			"businessPhones": []string{"+1 425 555 0109"}, "mobilePhone": nil, "jobTitle": "Engineer", "department": "R&D",
			"officeLocation": nil, "companyName": nil, "employeeId": nil, "userType": "Member", "accountEnabled": true,
			"onPremisesExtensionAttributes": map[string]any{"extensionAttribute1": nil, "extensionAttribute7": "4711"}})
	}
	page, _ := json.Marshal(map[string]any{"value": users, "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x"})
	b.SetBytes(int64(len(page)))
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			var w wirePage[leanUser]
			if !decodeUserPage(page, &w) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := stdUserPage(page); err != nil {
				b.Fatal(err)
			}
		}
	})
}
