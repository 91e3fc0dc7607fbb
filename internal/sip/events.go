package sip

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"
)

// Call states, as Yeastar reports them for an extension.
const (
	CallRinging = "ringing" // an incoming call is alerting
	CallBusy    = "busy"    // placing or talking
	CallIdle    = "idle"    // no live call
)

// CallEvent is a change of an extension's call state.
type CallEvent struct {
	Extension string
	State     string // CallRinging, CallBusy or CallIdle
	CallID    string // the SIP Call-ID of the call that caused the change
	At        time.Time
}

// maxFrame bounds one evapi message.
const maxFrame = 64 << 10

// readFrame returns the next evapi message: a netstring ("<len>:<bytes>,"; evapi's
// default netstring_format 1) or, when the stream does not start with a digit, one line
// (netstring_format 0 with events that end in "\n"). Blank separators are skipped.
func readFrame(r *bufio.Reader) ([]byte, error) {
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		switch {
		case b == ' ' || b == '\t' || b == '\r' || b == '\n':
			continue
		case b >= '0' && b <= '9':
			r.UnreadByte() //nolint:errcheck
			return readNetstring(r)
		default:
			r.UnreadByte() //nolint:errcheck
			line, err := r.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("sip: evapi line longer than %d bytes", r.Size())
			}
			if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
				return nil, err
			}
			return bytes.TrimSpace(bytes.Clone(line)), nil
		}
	}
}

func readNetstring(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadSlice(':')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("sip: evapi netstring length too long")
		}
		return nil, err
	}
	n, err := strconv.Atoi(string(head[:len(head)-1]))
	if err != nil || n < 0 || n > maxFrame {
		return nil, fmt.Errorf("sip: evapi netstring: bad length %q", head[:len(head)-1])
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("sip: evapi netstring: %w", noEOF(err))
	}
	if buf[n] != ',' {
		return nil, fmt.Errorf("sip: evapi netstring: missing ',' after %d bytes", n)
	}
	return buf[:n], nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// rawEvent is one JSON event of testdata/kamailio.cfg (pbx-target.md §4).
type rawEvent struct {
	Event  string `json:"event"` // call-new, ringing, answered, ended, failed
	Ext    string `json:"ext"`   // the callee
	From   string `json:"from"`  // the caller (call-new, answered)
	CallID string `json:"callid"`
}

// callTracker turns dialog events into per-extension call states. An extension is busy
// while it has an answered call or is placing one, ringing while a call to it alerts, idle
// otherwise. It only reports changes.
type callTracker struct {
	ext   map[string]*extCalls
	calls map[string][2]string // callid -> callee, caller
}

type extCalls struct {
	ringing map[string]bool // incoming, alerting
	busy    map[string]bool // answered, or outgoing
	state   string
}

func newCallTracker() *callTracker {
	return &callTracker{ext: map[string]*extCalls{}, calls: map[string][2]string{}}
}

func (t *callTracker) get(ext string) *extCalls {
	e := t.ext[ext]
	if e == nil {
		e = &extCalls{ringing: map[string]bool{}, busy: map[string]bool{}, state: CallIdle}
		t.ext[ext] = e
	}
	return e
}

// apply folds one event in and returns the state changes it causes.
func (t *callTracker) apply(ev rawEvent, at time.Time) []CallEvent {
	if ev.CallID == "" {
		return nil
	}
	parties := t.calls[ev.CallID]
	if ev.Ext != "" {
		parties[0] = ev.Ext
	}
	if ev.From != "" {
		parties[1] = ev.From
	}
	callee, caller := parties[0], parties[1]
	var touched []string
	switch ev.Event {
	case "call-new":
		t.calls[ev.CallID] = parties
		if caller != "" {
			t.get(caller).busy[ev.CallID] = true
			touched = append(touched, caller)
		}
	case "ringing":
		t.calls[ev.CallID] = parties
		if callee != "" {
			t.get(callee).ringing[ev.CallID] = true
			touched = append(touched, callee)
		}
	case "answered":
		t.calls[ev.CallID] = parties
		for _, x := range []string{callee, caller} {
			if x != "" {
				e := t.get(x)
				delete(e.ringing, ev.CallID)
				e.busy[ev.CallID] = true
				touched = append(touched, x)
			}
		}
	case "ended", "failed":
		delete(t.calls, ev.CallID)
		for _, x := range []string{callee, caller} {
			if e := t.ext[x]; x != "" && e != nil {
				delete(e.ringing, ev.CallID)
				delete(e.busy, ev.CallID)
				touched = append(touched, x)
			}
		}
	default:
		return nil
	}
	var out []CallEvent
	for _, x := range touched {
		e := t.ext[x]
		s := CallIdle
		switch {
		case len(e.busy) > 0:
			s = CallBusy
		case len(e.ringing) > 0:
			s = CallRinging
		}
		if s == e.state {
			continue
		}
		e.state = s
		out = append(out, CallEvent{Extension: x, State: s, CallID: ev.CallID, At: at})
		if s == CallIdle {
			delete(t.ext, x)
		}
	}
	return out
}

// forget drops every call and returns an idle event for each extension that
// was ringing or busy (sorted by extension).
func (t *callTracker) forget(at time.Time) []CallEvent {
	var out []CallEvent
	for _, x := range slices.Sorted(maps.Keys(t.ext)) {
		if t.ext[x].state != CallIdle {
			out = append(out, CallEvent{Extension: x, State: CallIdle, At: at})
		}
	}
	t.ext, t.calls = map[string]*extCalls{}, map[string][2]string{}
	return out
}

// ListenCallEvents connects to Kamailio's evapi socket at addr (HOST:PORT), and calls fn
// for each call-state change until ctx ends; fn runs on the reading goroutine. A lost
// connection is retried with exponential backoff (200 ms to 10 s). Events Kamailio emits
// while no client is connected are lost, so when the connection drops every extension
// with a call in progress is reported idle (a call that outlives the reconnect shows
// again with its next event). It returns nil when ctx ends.
func ListenCallEvents(ctx context.Context, addr string, logger *slog.Logger, fn func(CallEvent)) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%w: evapi address %q: %w", ErrInvalid, addr, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	const minBackoff, maxBackoff = 200 * time.Millisecond, 10 * time.Second
	backoff := minBackoff
	var d net.Dialer
	for ctx.Err() == nil {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			logger.InfoContext(ctx, "evapi connected", "addr", addr)
			start := time.Now()
			err = readEvents(ctx, conn, logger, fn)
			if time.Since(start) > maxBackoff {
				backoff = minBackoff // it was a working connection
			}
		}
		if ctx.Err() != nil {
			break
		}
		logger.WarnContext(ctx, "evapi connection lost; retrying", "addr", addr, "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
	return nil
}

// readEvents reads one connection until it fails or ctx ends.
func readEvents(ctx context.Context, conn net.Conn, logger *slog.Logger, fn func(CallEvent)) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReaderSize(conn, maxFrame)
	t := newCallTracker()
	for {
		frame, err := readFrame(r)
		if err != nil {
			if ctx.Err() == nil {
				// The events that would end the calls in progress may be
				// lost while no client is connected: report those
				// extensions idle now rather than busy for good.
				for _, ce := range t.forget(time.Now()) {
					fn(ce)
				}
			}
			return err
		}
		var ev rawEvent
		if err := json.Unmarshal(frame, &ev); err != nil {
			logger.WarnContext(ctx, "evapi: skipping a message that is not JSON", "err", err, "len", len(frame))
			continue
		}
		for _, ce := range t.apply(ev, time.Now()) {
			fn(ce)
		}
	}
}
