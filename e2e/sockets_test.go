//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"
)

// TestWebhookAcrossRestart is systemd socket activation as the driver uses
// it for every scenario: the webhook's listening socket belongs to the
// service manager (here the test), not to a mailgate process. An operator
// reply that Userlike sends while mailgate is down (killed with SIGKILL)
// connects and waits in the socket's backlog; the next mailgate process
// takes the socket over, answers that very request 200 (no retry) and
// mails the reply.
func TestWebhookAcrossRestart(t *testing.T) {
	const customer = "jane@example.test"
	resetMailboxes(t, customer)
	_, g := startScenario(t, mailgateOptions{SMTP: `coalesce = "0s"`})
	g.Kill9()

	reply := operatorReply{ID: "op-sock-1", Contact: customer, Operator: "Olivia",
		Text: "Hi Jane, this answer was sent while mailgate restarted (sock-answer)."}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wrote := make(chan struct{})
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(wrote) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, g.WebhookURL(), bytes.NewReader(reply.payload()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("API-SECURITY-TOKEN", outboundToken)
	type answer struct {
		status int
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		// No client timeout: ctx bounds the call.
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		resp.Body.Close()
		answered <- answer{status: resp.StatusCode}
	}()
	select {
	case <-wrote:
	case a := <-answered:
		t.Fatalf("the webhook call while mailgate is down ended before mailgate restarted: %d %v", a.status, a.err)
	}
	// The request is in the socket's buffers, and no process accepts it.
	if err := g.Restart(); err != nil {
		t.Fatal(err)
	}
	a := <-answered
	if a.err != nil || a.status != http.StatusOK {
		t.Fatalf("the webhook call made while mailgate was down: %d %v, want 200 from the restarted mailgate; log:\n%s", a.status, a.err, g.LogTail(30))
	}
	if n, ok := waitCount(t, customer, "INBOX", 1, 60*time.Second); !ok {
		t.Fatalf("jane's INBOX holds %d messages 60s after the reply, want 1; log:\n%s", n, g.LogTail(40))
	}
}
