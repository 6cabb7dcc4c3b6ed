package session

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/wire"
)

// The read token. Exactly one goroutine at a time reads the connection:
// a reader goroutine of the session, a caller reading its own answer, or
// nobody, for a short while after a caller or reader finds no call left
// pending (so that the next caller may read its own answer; a reader takes
// the token back after readerGrace).

// holder says who holds the read token.
type holder uint8

const (
	holderNone holder = iota
	holderReader
	holderCaller
)

// tokenState is the read token's state; Session.mu guards it.
type tokenState struct {
	holder holder
	// epoch changes with every grant: a reader holds the token as long as
	// the epoch it was granted is current.
	epoch   uint64
	parked  int        // readers waiting on Session.grant
	handoff wire.Frame // a request a caller read, for the next reader to serve first
	hasHand bool

	// The grace and takeover timers are armed for one free token, or one
	// handler a reader runs itself, and stopped when the token is taken,
	// or the handler returns, so that they fire only when they have work
	// to do. A grace timer that fires late, for an earlier freeing, only
	// gives a reader the token sooner; a takeover timer looks at how long
	// the handler in hand has run.
	inline   bool      // the token's reader runs a handler itself
	inlineAt time.Time // since when

	// readDeadline is the read deadline in force on the connection, for
	// connections that have one; passed reports that a read found it
	// passed.
	readDeadline time.Time
	passed       bool
}

// readerGrace is how long a freed token stays free before a reader takes
// it back: the next call on a busy connection finds
// it free and reads its own answer; on a quiet one, a reader reads again
// after this, so unrequested frames (heartbeats, messages, the peer
// hanging up) wait at most this long.
const readerGrace = time.Millisecond

// inlineBudget is how long a reader runs a handler itself before another
// reader takes over the connection. A handler
// that ends sooner costs no hand-off to another goroutine at all.
const inlineBudget = 100 * time.Microsecond

// readerIdle is how long a parked reader waits for the token before it
// exits. Reusing readers keeps their grown stacks, which a fresh goroutine
// would have to grow again.
const readerIdle = time.Second

// grantLocked gives the token to a reader: a parked one if there is one,
// else one the caller must start with startReader when start is true.
func (s *Session) grantLocked() (epoch uint64, start bool) {
	s.token.holder = holderReader
	s.token.epoch++
	if s.token.parked > 0 {
		s.token.parked--
		s.grant <- struct{}{} // capacity 1: the previous grant was taken, since only the token's holder grants
		return s.token.epoch, false
	}
	return s.token.epoch, true
}

func (s *Session) startReader(epoch uint64) { go s.reader(epoch) }

// grantAndUnlock gives the token to a reader, as grantLocked, unlocks mu
// and starts the reader if none was parked.
func (s *Session) grantAndUnlock() {
	epoch, start := s.grantLocked()
	s.mu.Unlock()
	if start {
		s.startReader(epoch)
	}
}

// handOff gives the token, and a request frame f that its holder read but
// may not serve (a caller), to a reader.
func (s *Session) handOff(epoch uint64, f wire.Frame) {
	s.mu.Lock()
	if s.token.epoch != epoch || s.ended {
		s.mu.Unlock()
		f.Release()
		return
	}
	s.token.handoff, s.token.hasHand = f, true
	s.grantAndUnlock()
}

// release passes on the token a caller held: to a reader while other calls
// wait for answers, else it is left free for the next caller.
func (s *Session) release(epoch uint64) {
	s.mu.Lock()
	if s.token.epoch != epoch || s.ended {
		s.mu.Unlock()
		return
	}
	if len(s.pending) > 0 {
		s.grantAndUnlock()
		return
	}
	s.freeLocked()
	s.mu.Unlock()
}

// freeLocked leaves the token free, and makes sure a reader takes it back
// if no caller does within readerGrace.
func (s *Session) freeLocked() {
	s.token.holder = holderNone
	if s.grace == nil {
		s.grace = time.AfterFunc(readerGrace, s.graceOver)
		return
	}
	s.grace.Reset(readerGrace)
}

// graceOver runs on a timer: a token left free for readerGrace goes to a
// reader.
func (s *Session) graceOver() {
	s.mu.Lock()
	if s.ended || s.token.holder != holderNone {
		s.mu.Unlock()
		return
	}
	s.grantAndUnlock()
}

// takeToken takes the free token for a caller, stopping the grace timer.
// s.mu must be held.
func (s *Session) takeToken() uint64 {
	s.token.holder = holderCaller
	s.token.epoch++
	if s.grace != nil {
		s.grace.Stop()
	}
	return s.token.epoch
}

// reader is a reader goroutine, started holding the token at epoch. It
// reads while it holds the token, then parks until granted it again.
func (s *Session) reader(epoch uint64) {
	var idle *time.Timer
	for {
		s.readAsReader(epoch)
		var ok bool
		if epoch, ok = s.park(&idle); !ok {
			return
		}
	}
}

// park waits for a grant of the token, returning false when the reader
// should exit instead: after readerIdle without one, or once the session
// ended.
func (s *Session) park(idle **time.Timer) (uint64, bool) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return 0, false
	}
	s.token.parked++
	s.mu.Unlock()
	if *idle == nil {
		*idle = time.NewTimer(readerIdle)
	} else {
		(*idle).Reset(readerIdle)
	}
	select {
	case <-s.grant:
		return s.granted(), true
	case <-s.readerDone:
		(*idle).Stop()
		return 0, false
	case <-(*idle).C:
	}
	s.mu.Lock()
	select {
	case <-s.grant: // granted as the timer fired
		s.mu.Unlock()
		return s.granted(), true
	default:
	}
	s.token.parked--
	s.mu.Unlock()
	return 0, false
}

func (s *Session) granted() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token.epoch
}

// readAsReader reads and handles frames while the reader holds the token
// granted at epoch.
func (s *Session) readAsReader(epoch uint64) {
	for {
		s.mu.Lock()
		if s.token.epoch != epoch || s.ended {
			s.mu.Unlock()
			return
		}
		f, handed := s.token.handoff, s.token.hasHand
		s.token.handoff, s.token.hasHand = wire.Frame{}, false
		s.mu.Unlock()
		if !handed {
			var err error
			if f, err = s.conn.ReadFrame(); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					s.deadlinePassed(true)
					continue
				}
				s.fail(err)
				return
			}
			s.received(&f)
		}
		switch {
		case isRequest(f.Type):
			if !s.serve(f, epoch) {
				return
			}
		case isAnswer(f.Type):
			s.deliver(f)
			if s.freeIfIdle(epoch) {
				return
			}
		default:
			if err := s.dispatch(f); err != nil {
				s.fail(err)
				return
			}
		}
	}
}

// freeIfIdle frees the token a reader holds when no call is pending, so the
// next caller can read its own answer, on connections where callers read.
func (s *Session) freeIfIdle(epoch uint64) bool {
	if s.dl == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) > 0 || s.token.epoch != epoch || s.ended {
		return false
	}
	s.freeLocked()
	return true
}

// received counts a frame read from the connection.
func (s *Session) received(f *wire.Frame) {
	s.framesIn.Add(1)
	s.stats.Received(f.Size())
}

// dispatch handles a frame that neither opens a request nor, for a caller,
// answers its own: answers to other calls, cancellations, heartbeats,
// messages and the end of the connection. An error ends the session.
func (s *Session) dispatch(f wire.Frame) error {
	switch f.Type {
	case wire.TypeExecuteResponse, wire.TypeStreamData, wire.TypeError:
		s.deliver(f)
	case wire.TypeExecuteRequest, wire.TypeSignal: // on a session without a handler
		if f.ID != 0 {
			_ = s.write(codec.ErrorFrame(f.ID, spear.CodeNotFound, "no handler for "+f.Type.String()))
		}
		f.Release()
	case wire.TypeCancel:
		s.mu.Lock()
		r := s.serving[f.ID]
		s.mu.Unlock()
		if r != nil {
			r.ctx.cancel()
		}
	case wire.TypeHeartbeat:
		if f.Flags&wire.FlagAck == 0 {
			_ = s.write(&wire.Frame{Type: wire.TypeHeartbeat, Flags: wire.FlagAck, ID: f.ID, Payload: f.Payload})
		} else if rtt, ok := probeRTT(f.Payload); ok {
			s.stats.HeartbeatRTT(rtt)
		}
		f.Release()
	case wire.TypeMessage:
		if s.cfg.OnMessage != nil {
			s.cfg.OnMessage(f)
		}
	case wire.TypeClose:
		_, reason, _ := codec.DecodeClose(f.Payload) // an undecodable reason is still a goodbye
		return &peerClosedError{reason: reason}
	default: // handshake frames after the handshake; fail tells the peer
		return fmt.Errorf("%w: unexpected %s frame after the handshake", spear.ErrInvalidMessage, f.Type)
	}
	return nil
}

// fail ends the session after a read error or a protocol violation,
// telling the peer which of its frames broke the protocol where it can be
// told (docs/protocol.md, "Errors").
func (s *Session) fail(err error) {
	if f, ok := codec.Refusal(err); ok {
		_ = s.conn.WriteFrame(f)
	}
	s.finish(err)
}

// armReadDeadline makes sure the connection's read deadline is no later
// than d (none when d is zero): the token's holder reads with it. A
// deadline already in force is left when it is earlier but not yet
// passed, so a run of calls, each with a later deadline, changes it only
// once in a while; reading then wakes early, once, and arms again.
func (s *Session) armReadDeadline(d time.Time) {
	if d.IsZero() {
		return
	}
	s.mu.Lock()
	if cur := s.token.readDeadline; cur.IsZero() || cur.After(d) || s.token.passed {
		s.token.readDeadline, s.token.passed = d, false
		_ = s.dl.SetReadDeadline(d)
	}
	s.mu.Unlock()
}

// deadlinePassed notes that a read found the read deadline passed; a
// reader, which reads without one, removes it.
func (s *Session) deadlinePassed(reader bool) {
	s.mu.Lock()
	s.token.passed = true
	if reader {
		s.token.readDeadline, s.token.passed = time.Time{}, false
		_ = s.dl.SetReadDeadline(time.Time{})
	}
	s.mu.Unlock()
}

// interruptRead wakes whoever is reading, for a leading caller whose
// context ended: the read fails with a deadline error, which loses no
// data, and the reader looks at why.
func (s *Session) interruptRead() {
	past := time.Unix(1, 0)
	s.mu.Lock()
	s.token.readDeadline, s.token.passed = past, true
	_ = s.dl.SetReadDeadline(past)
	s.mu.Unlock()
}
