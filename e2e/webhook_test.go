//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// operatorReply is one operator message as Userlike sends it to the
// Outbound URL (mailgate's webhook).
type operatorReply struct {
	ID       string // Userlike's message id, the idempotency key
	Contact  string // the customer's address
	Operator string // display name; "" leaves the operator out
	Text     string
}

// payload renders r in the nested shape of the Custom Channel webhook.
func (r operatorReply) payload() []byte {
	msg := map[string]any{"id": r.ID, "text": r.Text}
	if r.Operator != "" {
		msg["operator"] = map[string]string{"name": r.Operator}
	}
	b, err := json.Marshal(map[string]any{
		"message": msg,
		"contact": map[string]string{"email": r.Contact},
	})
	if err != nil {
		panic(err) // only strings and maps
	}
	return b
}

// webhookAnswer is what mailgate answered a webhook POST.
type webhookAnswer struct {
	Status int
	Body   string
	// State is the "status" field of a 200 answer: queued, duplicate, ...
	State string
}

// WebhookURL is the Outbound URL to configure in Userlike for the channel.
func (g *mailgate) WebhookURL() string { return "http://" + g.listen + "/userlike/support" }

// webhookClient posts like Userlike does: short timeouts, no keep-alive
// surprises across daemon restarts.
var webhookClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// PostWebhook sends body to the channel's webhook with token in
// API-SECURITY-TOKEN ("" sends no token). An error means no HTTP answer.
func (g *mailgate) PostWebhook(ctx context.Context, token string, body []byte) (webhookAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.WebhookURL(), bytes.NewReader(body))
	if err != nil {
		return webhookAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("API-SECURITY-TOKEN", token)
	}
	resp, err := webhookClient.Do(req)
	if err != nil {
		return webhookAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return webhookAnswer{}, err
	}
	a := webhookAnswer{Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	var st struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(b, &st) == nil {
		a.State = st.Status
	}
	return a, nil
}

// sendReply posts r with the right token and fails the test unless
// mailgate answers 200.
func (g *mailgate) sendReply(t testing.TB, r operatorReply) webhookAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	a, err := g.PostWebhook(ctx, outboundToken, r.payload())
	if err != nil {
		t.Fatalf("webhook POST of reply %s: %v", r.ID, err)
	}
	if a.Status != http.StatusOK {
		t.Fatalf("webhook POST of reply %s: %d %s, want 200", r.ID, a.Status, a.Body)
	}
	return a
}

// deliverReply posts r until mailgate answers 200, as Userlike retries a
// webhook delivery that failed, and returns the number of attempts and the
// final answer. Attempts without an answer (mailgate down) or with another
// status are retried every 100ms until ctx ends.
func (g *mailgate) deliverReply(ctx context.Context, r operatorReply) (attempts int, last webhookAnswer, err error) {
	for {
		attempts++
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		a, perr := g.PostWebhook(actx, outboundToken, r.payload())
		cancel()
		if perr == nil && a.Status == http.StatusOK {
			return attempts, a, nil
		}
		if perr == nil {
			last = a
			err = fmt.Errorf("HTTP %d %s", a.Status, a.Body)
		} else {
			err = perr
		}
		select {
		case <-ctx.Done():
			return attempts, last, fmt.Errorf("reply %s never answered 200 (%d attempts, last: %v)", r.ID, attempts, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
