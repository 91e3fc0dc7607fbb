package sip

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func framesOf(t *testing.T, file string) [][]byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out [][]byte
	for {
		fr, err := readFrame(r)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s frame %d: %v", file, len(out), err)
		}
		out = append(out, fr)
	}
}

func TestReadFrameSamples(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"evapi-kamailio.bin", "evapi-lines.txt"} {
		frames := framesOf(t, file)
		var kinds []string
		for _, fr := range frames {
			var ev rawEvent
			if err := json.Unmarshal(fr, &ev); err != nil {
				t.Fatalf("%s: %q: %v", file, fr, err)
			}
			kinds = append(kinds, ev.Event)
		}
		want := []string{"call-new", "ringing", "answered", "ended", "call-new", "failed"}
		if !slices.Equal(kinds, want) {
			t.Errorf("%s: events %q, want %q", file, kinds, want)
		}
	}
}

func TestReadFrameErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"5:abc",                    // truncated
		"3:abcX",                   // no comma
		"x3:abc,",                  // not JSON, no newline: a line that ends in EOF is returned, see below
		"99999999:abc,",            // too long
		"12345678901234567890123:", // absurd length
	} {
		r := bufio.NewReader(strings.NewReader(in))
		fr, err := readFrame(r)
		if in == "x3:abc," {
			if err != nil || string(fr) != in {
				t.Errorf("readFrame(%q) = %q, %v", in, fr, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("readFrame(%q) = %q, want an error", in, fr)
		}
	}
}

func TestCallTracker(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 5, 33, 1, 0, time.UTC)
	tests := []struct {
		file string
		want []string
	}{
		{"evapi-lines.txt", []string{
			"2000 busy 1-16666", "1003 ringing 1-16666", "1003 busy 1-16666",
			"1003 idle 1-16666", "2000 idle 1-16666",
			"2000 busy 1-16704", "2000 idle 1-16704",
		}},
		{"evapi-kamailio.bin", []string{
			"1002 busy 1-18029", "1001 ringing 1-18029", "1001 busy 1-18029",
			"1001 idle 1-18029", "1002 idle 1-18029",
			"1002 busy 1-18031", "1002 idle 1-18031",
		}},
	}
	for _, tt := range tests {
		tr := newCallTracker()
		var got []string
		for _, fr := range framesOf(t, tt.file) {
			var ev rawEvent
			if err := json.Unmarshal(fr, &ev); err != nil {
				t.Fatal(err)
			}
			for _, ce := range tr.apply(ev, at) {
				if !ce.At.Equal(at) {
					t.Errorf("At = %v", ce.At)
				}
				got = append(got, ce.Extension+" "+ce.State+" "+strings.TrimSuffix(ce.CallID, "@127.0.0.1"))
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s:\n got %q\nwant %q", tt.file, got, tt.want)
		}
		if len(tr.ext) != 0 || len(tr.calls) != 0 {
			t.Errorf("%s: tracker keeps state after all calls ended: %v %v", tt.file, tr.ext, tr.calls)
		}
	}
}

func TestCallTrackerSecondCallWhileBusy(t *testing.T) {
	t.Parallel()
	tr := newCallTracker()
	var got []string
	for _, ev := range []rawEvent{
		{Event: "ringing", Ext: "1001", CallID: "a"},
		{Event: "answered", Ext: "1001", From: "1002", CallID: "a"},
		{Event: "ringing", Ext: "1001", CallID: "b"}, // call waiting: still busy
		{Event: "failed", Ext: "1001", CallID: "b"},
		{Event: "ended", Ext: "1001", CallID: "a"},
		{Event: "ringing", Ext: "1001"}, // no call id: ignored
	} {
		for _, ce := range tr.apply(ev, time.Time{}) {
			got = append(got, ce.Extension+" "+ce.State+" "+ce.CallID)
		}
	}
	want := []string{"1001 ringing a", "1001 busy a", "1002 busy a", "1001 idle a", "1002 idle a"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestListenCallEventsReconnects serves the captured frames, drops the connection, and
// expects the listener to come back and read them again.
func TestListenCallEventsReconnects(t *testing.T) {
	t.Parallel()
	sample, err := os.ReadFile(filepath.Join("testdata", "evapi-kamailio.bin"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Write(sample)
			c.Write([]byte("5:nojs!,")) // not JSON: skipped
			c.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	events := make(chan CallEvent, 100)
	done := make(chan error, 1)
	go func() {
		done <- ListenCallEvents(ctx, ln.Addr().String(), testLogger(t), func(e CallEvent) { events <- e })
	}()
	var got []string
	for len(got) < 14 {
		select {
		case e := <-events:
			got = append(got, e.Extension+" "+e.State)
		case <-ctx.Done():
			t.Fatalf("timed out after %q", got)
		}
	}
	round := []string{"1002 busy", "1001 ringing", "1001 busy", "1001 idle", "1002 idle", "1002 busy", "1002 idle"}
	if want := append(slices.Clone(round), round...); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if len(accepted) < 1 {
		t.Fatal("no reconnect seen")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ListenCallEvents = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenCallEvents did not return after cancel")
	}
}

func TestListenCallEventsBadAddr(t *testing.T) {
	t.Parallel()
	if err := ListenCallEvents(t.Context(), "nope", nil, func(CallEvent) {}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
}

// A connection that drops while calls are in progress reports those
// extensions idle: the events that would end them may be lost.
func TestListenCallEventsDropClearsCalls(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	frame := func(js string) string { return fmt.Sprintf("%d:%s,", len(js), js) }
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(frame(`{"event":"call-new","ext":"1001","from":"1002","callid":"c1"}`) +
			frame(`{"event":"answered","ext":"1001","from":"1002","callid":"c1"}`) +
			frame(`{"event":"ringing","ext":"1003","from":"1004","callid":"c2"}`)))
		c.Close() // dropped before the calls end; later connections are refused
		ln.Close()
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	events := make(chan CallEvent, 100)
	go func() {
		_ = ListenCallEvents(ctx, ln.Addr().String(), testLogger(t), func(e CallEvent) { events <- e })
	}()
	var got []string
	for len(got) < 6 {
		select {
		case e := <-events:
			got = append(got, e.Extension+" "+e.State)
		case <-ctx.Done():
			t.Fatalf("timed out after %q", got)
		}
	}
	want := []string{"1002 busy", "1001 busy", "1003 ringing", "1001 idle", "1002 idle", "1003 idle"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
