package main

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"sync"
	"time"

	"mailgate/userlike/userliketest"
)

// markerRE finds the marker every benchmark mail carries in its text.
var markerRE = regexp.MustCompile(`\[bm:[a-z0-9]+-[0-9]+\]`)

// fakeUserlike is a Custom Channel Inbound URL on loopback
// (userliketest.Inbound, lean) that answers 200 at once and records when
// each marked text arrived.
type fakeUserlike struct {
	in  *userliketest.Inbound
	srv *http.Server
	ln  net.Listener

	mu      sync.Mutex
	arrived map[string]time.Time // marker -> first POST carrying it
}

// startFakeUserlike listens on 127.0.0.1.
func startFakeUserlike() (*fakeUserlike, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fakeUserlike{in: userliketest.NewInbound(inboundToken), ln: ln, arrived: map[string]time.Time{}}
	f.in.Lean()
	f.in.OnAccept = func(p userliketest.Post) {
		// Lean: the text is not decoded; the marker is plain ASCII,
		// so it stands in the JSON as it does in the text.
		marker := string(markerRE.Find(p.Body))
		if marker == "" {
			return
		}
		f.mu.Lock()
		if _, ok := f.arrived[marker]; !ok {
			f.arrived[marker] = p.At
		}
		f.mu.Unlock()
	}
	f.srv = &http.Server{Handler: f.in, ReadHeaderTimeout: 10 * time.Second}
	go f.srv.Serve(ln)
	return f, nil
}

// url is the Inbound URL.
func (f *fakeUserlike) url() string { return "http://" + f.ln.Addr().String() + "/inbound" }

// close stops the server.
func (f *fakeUserlike) close() { f.srv.Close() }

// reset forgets every POST.
func (f *fakeUserlike) reset() {
	f.in.Reset()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arrived = map[string]time.Time{}
}

// waitPosts waits until at least n POSTs were accepted, or timeout; it
// returns the count and the time of the last POST.
func (f *fakeUserlike) waitPosts(n int, timeout time.Duration) (int, time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return f.in.WaitCount(ctx, n)
}

// arrival returns when the text with marker arrived.
func (f *fakeUserlike) arrival(marker string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.arrived[marker]
	return t, ok
}
