//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mailgate/userlike/userliketest"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The fake Userlike's modes (userliketest.Mode).
const (
	modeOK          = userliketest.ModeOK
	modeUnavailable = userliketest.ModeUnavailable
	modeHang        = userliketest.ModeHold
)

// inboundPost is one POST the fake Userlike received.
type inboundPost struct {
	At     time.Time
	Status int    // what the fake answered (0 while a held request waits)
	Body   []byte // raw JSON
	Email  string
	Name   string
	Text   string
	URL    string
}

// fakeUserlike is the Inbound URL of a Userlike Custom Channel:
// userliketest.Inbound on loopback, with the posts flattened for the
// scenarios.
type fakeUserlike struct {
	*userliketest.Inbound
	srv *httptest.Server
}

// newFakeUserlike starts a fake Userlike on 127.0.0.1; it stops when the
// test ends.
func newFakeUserlike(t testing.TB, token string) *fakeUserlike {
	f := &fakeUserlike{Inbound: userliketest.NewInbound(token)}
	f.srv = httptest.NewServer(f.Inbound)
	t.Cleanup(func() {
		f.SetMode(modeOK)
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
	return f
}

// InboundURL is the URL mailgate posts to.
func (f *fakeUserlike) InboundURL() string { return f.srv.URL + "/inbound/support" }

func flatten(ps []userliketest.Post) []inboundPost {
	out := make([]inboundPost, len(ps))
	for i, p := range ps {
		m := p.Message
		out[i] = inboundPost{At: p.At, Status: p.Status, Body: p.Body, Email: m.Email, Name: m.Name, Text: m.Text, URL: m.URL}
	}
	return out
}

// Accepted returns the POSTs answered 200, in arrival order.
func (f *fakeUserlike) Accepted() []inboundPost { return flatten(f.Inbound.Accepted()) }

// All returns every POST with a valid token, in arrival order.
func (f *fakeUserlike) All() []inboundPost { return flatten(f.Posts()) }

// WaitAccepted waits until cond holds for the accepted POSTs, or timeout.
// It returns the last accepted POSTs and whether cond held.
func (f *fakeUserlike) WaitAccepted(timeout time.Duration, cond func([]inboundPost) bool) ([]inboundPost, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ps, ok := f.Wait(ctx, func(ps []userliketest.Post) bool { return cond(flatten(ps)) })
	return flatten(ps), ok
}

// fetchMedia downloads a media URL as Userlike would and returns the
// SHA-256 of the body (hex) and the Content-Type.
func fetchMedia(url string) (sum, contentType string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", "", fmt.Errorf("GET %s: %w", url, err)
	}
	return hex.EncodeToString(h.Sum(nil)), resp.Header.Get("Content-Type"), nil
}

// describePosts renders posts for failure messages.
func describePosts(posts []inboundPost) string {
	var b strings.Builder
	for i, p := range posts {
		fmt.Fprintf(&b, "  #%d %s status=%d %s\n", i, p.At.Format("15:04:05.000"), p.Status, p.Body)
	}
	if b.Len() == 0 {
		return "  (none)\n"
	}
	return b.String()
}
