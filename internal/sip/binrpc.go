package sip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Kamailio's binrpc (the ctl module's protocol, what kamcmd speaks), the few parts needed to
// call an RPC with string parameters and tell success from an error reply. Layout
// (src/modules/ctl/binrpc.h): a header byte 0xA1 (magic 0xA, version 1); a byte with the
// flags (high nibble), length size - 1 (2 bits) and cookie size - 1 (2 bits); the body
// length and the cookie, big-endian; then records. A record header is one byte: a flag bit
// (set: the 3-bit size field is the byte count of a length that follows), a 3-bit size and
// a 4-bit type. Strings carry their terminating NUL.
const (
	binrpcMagicVers  = 0xA1
	binrpcFlagReply  = 0x1 // set on every reply
	binrpcFlagError  = 0x2 // reply flag: the body is an int code and a string message
	binrpcTypeInt    = 0x0
	binrpcTypeString = 0x1
	binrpcMaxBody    = 1 << 20
)

// binrpcRecord appends one string record.
func binrpcString(dst []byte, s string) []byte {
	n := len(s) + 1
	if n < 8 {
		dst = append(dst, byte(n<<4)|binrpcTypeString)
	} else {
		l := beMin(uint32(n))
		dst = append(dst, 0x80|byte(len(l)<<4)|binrpcTypeString)
		dst = append(dst, l...)
	}
	dst = append(dst, s...)
	return append(dst, 0)
}

// beMin is v big-endian without leading zero bytes (at least one byte).
func beMin(v uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	i := 0
	for i < 3 && b[i] == 0 {
		i++
	}
	return b[i:]
}

// encodeBinRPC builds a request packet: the method name, then the parameters.
func encodeBinRPC(cookie uint32, method string, params []string) []byte {
	body := binrpcString(nil, method)
	for _, p := range params {
		body = binrpcString(body, p)
	}
	l := beMin(uint32(len(body)))
	pkt := []byte{binrpcMagicVers, byte(len(l)-1)<<2 | 3} // 4-byte cookie
	pkt = append(pkt, l...)
	pkt = binary.BigEndian.AppendUint32(pkt, cookie)
	return append(pkt, body...)
}

// readBinRPCReply reads one reply. It returns *RPCError for an error reply and nil for
// success (the result records are not decoded: callers here need none).
func readBinRPCReply(r io.Reader, method string, cookie uint32) error {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return noEOF(err)
	}
	if h[0] != binrpcMagicVers {
		return fmt.Errorf("binrpc: bad magic/version 0x%02x", h[0])
	}
	flags := h[1] >> 4
	lenSize, cookieSize := int(h[1]>>2&3)+1, int(h[1]&3)+1
	lc := make([]byte, lenSize+cookieSize)
	if _, err := io.ReadFull(r, lc); err != nil {
		return noEOF(err)
	}
	n := beUint(lc[:lenSize])
	if n > binrpcMaxBody {
		return fmt.Errorf("binrpc: reply body of %d bytes", n)
	}
	if got := beUint(lc[lenSize:]); got != uint64(cookie) {
		return fmt.Errorf("binrpc: reply cookie %x, want %x", got, cookie)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return noEOF(err)
	}
	if flags&binrpcFlagReply == 0 {
		return errors.New("binrpc: answer is not a reply")
	}
	if flags&binrpcFlagError == 0 {
		return nil
	}
	rerr := &RPCError{Method: method}
	typ, val, rest, err := binrpcRecord(body)
	if err == nil && typ == binrpcTypeInt {
		rerr.Code = int(beUint(val))
		typ, val, _, err = binrpcRecord(rest)
	}
	if err == nil && typ == binrpcTypeString {
		rerr.Message = string(trimNUL(val))
	}
	return rerr
}

// binrpcRecord splits the first record off b.
func binrpcRecord(b []byte) (typ byte, val, rest []byte, err error) {
	if len(b) < 1 {
		return 0, nil, nil, errors.New("binrpc: empty record")
	}
	h := b[0]
	typ, size, b := h&0x0f, int(h>>4&7), b[1:]
	if h&0x80 != 0 {
		if len(b) < size {
			return 0, nil, nil, errors.New("binrpc: short record length")
		}
		size, b = int(beUint(b[:size])), b[size:]
	}
	if len(b) < size {
		return 0, nil, nil, errors.New("binrpc: short record")
	}
	return typ, b[:size], b[size:], nil
}

func beUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func trimNUL(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == 0 {
		return b[:len(b)-1]
	}
	return b
}
