package gdbstub

// Packet framing (GDB manual, E.1 "Overview"): $payload#cc, where cc is
// the two hex digits of the payload's byte sum modulo 256; '}' escapes
// '#', '$', '}' and '*' (XOR 0x20) in binary data; '+' and '-'
// acknowledge until QStartNoAckMode; a lone 0x03 byte outside a packet
// is an interrupt (Ctrl-C).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
)

// maxPacket bounds one received packet (what qSupported's PacketSize
// announces: gdb never sends more); a longer one is dropped.
const maxPacket = 0x4000

// interruptByte is the byte gdb sends for Ctrl-C (E.8, "Interrupts").
const interruptByte = 0x03

// event is what the reader goroutine delivers: a packet's payload, an
// interrupt, or the error that ended the connection.
type event struct {
	payload   string
	interrupt bool
	err       error
}

// conn is one gdb connection.
type conn struct {
	rw io.ReadWriter
	r  *bufio.Reader
	// mu serializes writes (replies from the server loop, acks from the
	// reader).
	mu sync.Mutex
	// noAck is set once QStartNoAckMode was acknowledged.
	noAck bool
}

func newConn(rw io.ReadWriter) *conn {
	return &conn{rw: rw, r: bufio.NewReader(rw)}
}

// checksum is the payload's byte sum modulo 256.
func checksum(s string) byte {
	var c byte
	for i := 0; i < len(s); i++ {
		c += s[i]
	}
	return c
}

// send writes one packet. In ack mode gdb acknowledges it; the reader
// goroutine discards those acknowledgements, and a '-' (retransmit) is
// not honoured: over a reliable stream it only follows a bug.
func (c *conn) send(payload string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := fmt.Fprintf(c.rw, "$%s#%02x", payload, checksum(payload))
	return err
}

// ack writes '+' or '-' in ack mode.
func (c *conn) ack(ok bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.noAck {
		return nil
	}
	b := []byte{'+'}
	if !ok {
		b[0] = '-'
	}
	_, err := c.rw.Write(b)
	return err
}

// readEvents delivers packets and interrupts until the connection ends.
// A packet with a bad checksum is refused ('-') and dropped; so is one
// longer than maxPacket.
func (c *conn) readEvents(out chan<- event) {
	for {
		p, intr, err := c.readPacket()
		switch {
		case err != nil:
			out <- event{err: err}
			return
		case intr:
			out <- event{interrupt: true}
		default:
			out <- event{payload: p}
		}
	}
}

// errBadPacket is a packet with a bad checksum or too long: dropped.
var errBadPacket = errors.New("bad packet")

// readPacket reads the next packet or interrupt, skipping acks and noise.
func (c *conn) readPacket() (string, bool, error) {
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return "", false, err
		}
		switch b {
		case interruptByte:
			return "", true, nil
		case '$':
			p, err := c.readPayload()
			if errors.Is(err, errBadPacket) {
				if err := c.ack(false); err != nil {
					return "", false, err
				}
				continue
			}
			if err != nil {
				return "", false, err
			}
			if err := c.ack(true); err != nil {
				return "", false, err
			}
			return p, false, nil
		}
		// '+', '-' and anything outside a packet are ignored.
	}
}

// readPayload reads a packet after its '$': the payload, '#' and the
// checksum.
func (c *conn) readPayload() (string, error) {
	var p []byte
	tooLong := false
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return "", err
		}
		if b == '#' {
			break
		}
		if b == '$' {
			// A new packet started inside this one: drop this one.
			p, tooLong = p[:0], false
			continue
		}
		if len(p) >= maxPacket {
			tooLong = true
			continue
		}
		p = append(p, b)
	}
	var cs [2]byte
	if _, err := io.ReadFull(c.r, cs[:]); err != nil {
		return "", err
	}
	want, err := strconv.ParseUint(string(cs[:]), 16, 8)
	if err != nil || tooLong || byte(want) != checksum(string(p)) {
		return "", errBadPacket
	}
	return string(p), nil
}

// escapeBinary escapes data for a binary reply (qXfer): '#', '$', '}'
// and '*' become '}' followed by the byte XOR 0x20.
func escapeBinary(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		switch b := s[i]; b {
		case '#', '$', '}', '*':
			out = append(out, '}', b^0x20)
		default:
			out = append(out, b)
		}
	}
	return string(out)
}
