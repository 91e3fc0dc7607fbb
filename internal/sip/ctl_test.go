package sip

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"
)

// udpCtl answers each request first with a stale id, then with reply(req).
func udpCtl(t *testing.T, reply func(rpcRequest) map[string]any) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var req rpcRequest
			if json.Unmarshal(buf[:n], &req) != nil {
				continue
			}
			stale, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "result": "stale", "id": req.ID + 1000})
			pc.WriteTo(stale, from)
			resp := reply(req)
			resp["jsonrpc"], resp["id"] = "2.0", req.ID
			b, _ := json.Marshal(resp)
			pc.WriteTo(b, from)
		}
	}()
	return "udp:" + pc.LocalAddr().String()
}

func TestCtlClientUDP(t *testing.T) {
	t.Parallel()
	addr := udpCtl(t, func(req rpcRequest) map[string]any {
		if req.Method == "ul.rm" {
			return map[string]any{"error": map[string]any{"code": 500, "message": "internal"}}
		}
		return map[string]any{"result": map[string]any{"uptime": 5}}
	})
	c, err := newCtlClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.call(t.Context(), "core.uptime")
	if err != nil || string(res) != `{"uptime":5}` {
		t.Fatalf("core.uptime = %s, %v", res, err)
	}
	_, err = c.call(t.Context(), "ul.rm", "location", "1001@pbx.local")
	var rerr *RPCError
	if !errors.As(err, &rerr) || rerr.Code != 500 || !errors.Is(err, ErrRegistrar) {
		t.Fatalf("ul.rm = %v, want *RPCError 500 wrapping ErrRegistrar", err)
	}

	// An RPC error on ul.rm reaches Remove's caller as ErrRegistrar; the row is gone.
	u, _, _ := newSQLiteDB(t)
	p := openP(t, Config{DBURL: u, CtlAddr: addr})
	if err := p.Remove(t.Context(), "1001"); !errors.Is(err, ErrRegistrar) {
		t.Fatalf("Remove = %v, want ErrRegistrar", err)
	}
}

func TestCtlClientTimeout(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	c, err := newCtlClient("udp:" + pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	if _, err := c.call(ctx, "core.uptime"); !errors.Is(err, ErrRegistrar) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call = %v, want ErrRegistrar and DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("call took %v despite a 100 ms deadline", d)
	}
}
