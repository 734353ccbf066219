package imapsync

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkCatchUp drains a folder of 200 messages of about 8 KiB, the way
// mailgate meets a backlog, through a Handler that spends 2 ms preparing
// each message without using the CPU (a DKIM key lookup in DNS) and
// 0.5 ms recording it (a store commit). The server is go-imap's in-memory
// one, reached directly or through a proxy that adds a round-trip time
// (a mailbox provider across the internet). One op is one whole drain,
// connection and login included.
//
// The variants: "serial" does all the work in Handle (a Handler without
// Prepare); "prepare=N" moves the 2 ms into Prepare on N workers. Done one
// message after another, with one FETCH round trip per batch of 50, the
// work alone takes 200 x 2.5 ms = 500 ms.
func BenchmarkCatchUp(b *testing.B) {
	const (
		messages = 200
		prepare  = 2 * time.Millisecond
		record   = 500 * time.Microsecond
	)
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond} {
		for _, workers := range []int{0, 1, 4} {
			name := "serial"
			if workers > 0 {
				name = fmt.Sprintf("prepare=%d", workers)
			}
			b.Run(fmt.Sprintf("rtt=%v/%s", rtt, name), func(b *testing.B) {
				ts := newTestServer(b, fullCaps)
				body := strings.Repeat("The parcel has not arrived yet, could you check the tracking?\r\n", 128)
				for i := range messages {
					ts.appendMsg("INBOX", testMail(i+1)+body)
				}
				addr := ts.address()
				if rtt > 0 {
					addr = delayProxy(b, addr, rtt/2)
				}
				for b.Loop() {
					r := newRecorder()
					opts := baseOptions(ts, r)
					opts.Address = addr
					if workers == 0 {
						opts.Handler = &slowHandler{recorder: r, handle: prepare + record}
					} else {
						sp := &slowPreparer{slowHandler{recorder: r, handle: record}, prepare}
						opts.Handler, opts.Preparer = sp, sp
						opts.PrepareWorkers = workers
					}
					w, err := NewWatcher(opts)
					if err != nil {
						b.Fatal(err)
					}
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan error, 1)
					go func() { done <- w.Run(ctx) }()
					for len(r.handledCopy()) < messages {
						time.Sleep(time.Millisecond)
					}
					cancel()
					<-done
				}
				b.ReportMetric(float64(messages*b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// slowHandler records messages after waiting handle in Handle.
type slowHandler struct {
	*recorder
	handle time.Duration
}

func (h *slowHandler) Handle(ctx context.Context, m *Message) error {
	time.Sleep(h.handle)
	return h.recorder.Handle(ctx, m)
}

// slowPreparer is a slowHandler that also waits prepare in Prepare.
type slowPreparer struct {
	slowHandler
	prepare time.Duration
}

func (p *slowPreparer) Prepare(ctx context.Context, m *Message) { time.Sleep(p.prepare) }

// delayProxy forwards connections to target, delaying every byte by delay
// in each direction, and returns its address.
func delayProxy(tb testing.TB, target string, delay time.Duration) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); delayedCopy(server, client, delay) }()
			go func() { defer wg.Done(); delayedCopy(client, server, delay) }()
		}
	}()
	return ln.Addr().String()
}

// delayedCopy copies src to dst, each chunk delay after it was read, and
// closes both when either side ends.
func delayedCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	chunks := make(chan chunk, 4096)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}
