package sip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// defaultRPCTimeout bounds one RPC when ctx has no earlier deadline.
const defaultRPCTimeout = 3 * time.Second

// RPCError is an error answered by Kamailio's JSON-RPC server (for example
// {"code":404,"message":"AOR not found"}). It wraps ErrRegistrar.
type RPCError struct {
	Method  string
	Code    int
	Message string
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("sip: rpc %s: %d %s", e.Method, e.Code, e.Message)
}

// Unwrap makes errors.Is(err, ErrRegistrar) hold.
func (e *RPCError) Unwrap() error { return ErrRegistrar }

// ctlClient talks to Kamailio's control interface, one short connection per call:
//   - a unix stream socket or tcp: binrpc, the ctl module's protocol (what kamcmd uses);
//   - a unix datagram socket or udp: JSON-RPC 2.0 to the jsonrpcs module's datagram
//     transport; the answer comes back to the sender's address, so a unix client binds
//     its own socket file for the reply.
//
// A unix socket's kind is found at each call: a stream connect to a datagram socket fails
// with EPROTOTYPE, and then the datagram protocol is used.
type ctlClient struct {
	network string // "unix" (either kind), "tcp" (binrpc) or "udp" (jsonrpcs)
	addr    string
	seq     atomic.Int64
}

// newCtlClient parses "unix:PATH", an absolute PATH, "tcp:HOST:PORT" or "udp:HOST:PORT".
func newCtlClient(addr string) (*ctlClient, error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		return &ctlClient{network: "unix", addr: strings.TrimPrefix(addr, "unix:")}, nil
	case strings.HasPrefix(addr, "/"):
		return &ctlClient{network: "unix", addr: addr}, nil
	case strings.HasPrefix(addr, "tcp:"), strings.HasPrefix(addr, "udp:"):
		network, a, _ := strings.Cut(addr, ":")
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%w: CtlAddr %q: %w", ErrInvalid, addr, err)
		}
		return &ctlClient{network: network, addr: a}, nil
	default:
		return nil, fmt.Errorf("%w: CtlAddr %q: want unix:PATH, tcp:HOST:PORT (binrpc) or udp:HOST:PORT (jsonrpcs)", ErrInvalid, addr)
	}
}

type rpcRequest struct {
	JSONRPC string   `json:"jsonrpc"`
	Method  string   `json:"method"`
	Params  []string `json:"params"`
	ID      int64    `json:"id"`
}

type rpcResponse struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	ID int64 `json:"id"`
}

// call runs one RPC with string parameters. Transport failures wrap ErrRegistrar; errors
// answered by Kamailio are *RPCError. The result is returned for JSON-RPC only (binrpc
// results are not decoded: nil).
func (c *ctlClient) call(ctx context.Context, method string, params ...string) (json.RawMessage, error) {
	deadline, ok := ctx.Deadline()
	if d := time.Now().Add(defaultRPCTimeout); !ok || d.Before(deadline) {
		deadline = d
	}
	var conn net.Conn
	var cleanup func()
	var err error
	binrpc := false
	switch c.network {
	case "tcp", "unix":
		d := net.Dialer{Deadline: deadline}
		conn, err = d.DialContext(ctx, c.network, c.addr)
		if err == nil {
			binrpc, cleanup = true, func() { conn.Close() }
			break
		}
		if c.network == "unix" && errors.Is(err, syscall.EPROTOTYPE) {
			conn, cleanup, err = c.dialDgram()
		}
	default:
		conn, cleanup, err = c.dialDgram()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrRegistrar, c.network, c.addr, ctxErr(ctx, err))
	}
	defer cleanup()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) }) //nolint:errcheck
	defer stop()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRegistrar, err)
	}
	if binrpc {
		return nil, c.callBinRPC(ctx, conn, method, params)
	}
	return c.callJSON(ctx, conn, method, params)
}

func (c *ctlClient) callBinRPC(ctx context.Context, conn net.Conn, method string, params []string) error {
	cookie := uint32(c.seq.Add(1))
	if _, err := conn.Write(encodeBinRPC(cookie, method, params)); err != nil {
		return fmt.Errorf("%w: send %s to %s: %w", ErrRegistrar, method, c.addr, ctxErr(ctx, err))
	}
	err := readBinRPCReply(conn, method, cookie)
	var rerr *RPCError
	if err != nil && !errors.As(err, &rerr) {
		return fmt.Errorf("%w: read %s reply from %s: %w", ErrRegistrar, method, c.addr, ctxErr(ctx, err))
	}
	return err
}

func (c *ctlClient) callJSON(ctx context.Context, conn net.Conn, method string, params []string) (json.RawMessage, error) {
	if params == nil {
		params = []string{}
	}
	id := c.seq.Add(1)
	req, err := json.Marshal(rpcRequest{JSONRPC: "2.0", Method: method, Params: params, ID: id})
	if err != nil {
		return nil, err
	}
	if err := c.write(conn, req); err != nil {
		return nil, fmt.Errorf("%w: send %s to %s: %w", ErrRegistrar, method, c.addr, ctxErr(ctx, err))
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("%w: read %s reply from %s: %w", ErrRegistrar, method, c.addr, ctxErr(ctx, err))
		}
		var resp rpcResponse
		if err := json.Unmarshal(buf[:n], &resp); err != nil {
			return nil, fmt.Errorf("%w: %s reply: %w", ErrRegistrar, method, err)
		}
		if resp.ID != id {
			continue // a late answer to an earlier request
		}
		if resp.Error != nil {
			return nil, &RPCError{Method: method, Code: resp.Error.Code, Message: resp.Error.Message}
		}
		return resp.Result, nil
	}
}

func ctxErr(ctx context.Context, err error) error {
	if e := ctx.Err(); e != nil {
		return e
	}
	var ne net.Error
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) && errors.As(err, &ne) && ne.Timeout() {
		return context.DeadlineExceeded
	}
	return err
}

// dialDgram returns a datagram socket ready to talk to the server, and a cleanup func.
func (c *ctlClient) dialDgram() (net.Conn, func(), error) {
	if c.network == "udp" {
		conn, err := net.Dial("udp", c.addr)
		if err != nil {
			return nil, nil, err
		}
		return conn, func() { conn.Close() }, nil
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	local := filepath.Join(os.TempDir(), "sb-kamrpc-"+hex.EncodeToString(rnd[:])+".sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"})
	if err != nil {
		return nil, nil, err
	}
	return &unixgramConn{UnixConn: conn, remote: &net.UnixAddr{Name: c.addr, Net: "unixgram"}},
		func() { conn.Close(); os.Remove(local) }, nil
}

// unixgramConn sends every Write to the server's socket file from a bound local socket.
type unixgramConn struct {
	*net.UnixConn
	remote *net.UnixAddr
}

func (u *unixgramConn) Write(b []byte) (int, error) { return u.WriteToUnix(b, u.remote) }

func (c *ctlClient) write(conn net.Conn, b []byte) error {
	n, err := conn.Write(b)
	if err == nil && n != len(b) {
		err = errors.New("short write")
	}
	return err
}
