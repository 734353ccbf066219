//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestOutboundRoundTrip is the whole loop: a customer (jane@) mails the
// support address through Postfix; mailgate posts the email to the fake
// Userlike; the operator answers on the webhook; the answer reaches jane's
// Dovecot INBOX as a reply threaded under her email, and a copy lands in
// the support mailbox's Sent folder. Forged, tokenless and malformed
// webhook calls are refused and queue nothing; a repeated delivery of the
// same operator message is queued once.
func TestOutboundRoundTrip(t *testing.T) {
	const customer = "jane@example.test"
	resetMailboxes(t, customer)
	ul, g := startScenario(t, mailgateOptions{SMTP: `coalesce = "0s"`})

	// 1. The customer writes, through Postfix (SMTP, then LMTP to Dovecot).
	orig := email{
		FromName:  "Jane Doe",
		From:      customer,
		Subject:   "Parcel 5521 arrived damaged",
		Body:      "Hello, parcel 5521 arrived with a broken corner (rt-question).\nCan you send a new one?",
		MessageID: "rt-" + randomToken() + "@client.example.test",
	}
	origRaw := orig.raw()
	start := time.Now()
	sendSMTP(t, customer, []string{supportUser}, origRaw)
	posts, ok := ul.WaitAccepted(60*time.Second, func(p []inboundPost) bool { return countMarker(p, "rt-question") > 0 })
	if !ok {
		t.Fatalf("the customer's email did not reach Userlike within 60s\npostfix queue:\n%s\nposts:\n%smailgate log:\n%s",
			postfixQueue(), describePosts(ul.All()), g.LogTail(40))
	}
	t.Logf("customer email: SMTP -> Postfix -> Dovecot -> mailgate -> Userlike in %v", time.Since(start).Round(time.Millisecond))
	if p := posts[len(posts)-1]; p.Email != customer || p.Name != "Jane Doe" {
		t.Errorf("posted as %q <%s>, want \"Jane Doe\" <%s>", p.Name, p.Email, customer)
	}

	// 2. Calls that must be refused, and queue nothing.
	reply := operatorReply{
		ID:       "op-rt-1",
		Contact:  customer,
		Operator: "Olivia",
		Text:     "Hi Jane, sorry about that! A new parcel is on its way (rt-answer).",
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	refused := []struct {
		name   string
		token  string
		body   string
		status int
	}{
		{"forged token", "not-the-" + outboundToken, string(reply.payload()), http.StatusUnauthorized},
		{"no token", "", string(reply.payload()), http.StatusUnauthorized},
		{"inbound token instead of the outbound one", inboundToken, string(reply.payload()), http.StatusUnauthorized},
		{"malformed JSON", outboundToken, `{"message":{"id":"op-rt-x","text":"half`, http.StatusBadRequest},
		{"JSON array", outboundToken, `[{"text":"hello"}]`, http.StatusBadRequest},
		{"trailing garbage", outboundToken, string(reply.payload()) + `{"x":1}`, http.StatusBadRequest},
		{"message without contact", outboundToken, `{"message":{"id":"op-rt-y","text":"to whom?"}}`, http.StatusBadRequest},
		{"contact that is no address", outboundToken, `{"message":{"id":"op-rt-z","text":"hi"},"contact":{"email":"Jane <jane@example.test>"}}`, http.StatusBadRequest},
	}
	for _, c := range refused {
		a, err := g.PostWebhook(ctx, c.token, []byte(c.body))
		if err != nil {
			t.Fatalf("webhook, %s: %v", c.name, err)
		}
		t.Logf("webhook, %s: %d %s", c.name, a.Status, a.Body)
		if a.Status != c.status {
			t.Errorf("webhook, %s: answered %d %s, want %d", c.name, a.Status, a.Body, c.status)
		}
		if strings.Contains(a.Body, outboundToken) || strings.Contains(a.Body, inboundToken) {
			t.Errorf("webhook, %s: the answer contains a token: %s", c.name, a.Body)
		}
	}
	if st := g.Status(t); sum(st.Outbox) != 0 {
		t.Errorf("after only refused webhook calls the outbox is not empty: %s", st)
	}
	if strings.Contains(g.FullLog(), outboundToken) {
		t.Errorf("the mailgate log contains the outbound token")
	}

	// 3. The operator answers; Userlike delivers the webhook twice.
	start = time.Now()
	if a := g.sendReply(t, reply); a.State != "queued" {
		t.Errorf("first delivery of the operator message: status %q (%s), want queued", a.State, a.Body)
	}
	if a := g.sendReply(t, reply); a.State != "duplicate" {
		t.Errorf("repeated delivery of the operator message: status %q (%s), want duplicate", a.State, a.Body)
	}
	if n, ok := waitCount(t, customer, "INBOX", 1, 60*time.Second); !ok {
		t.Fatalf("jane's INBOX holds %d messages 60s after the reply, want 1\npostfix queue:\n%s\nmailgate log:\n%s",
			n, postfixQueue(), g.LogTail(40))
	}
	t.Logf("reply: webhook -> mailgate -> Postfix -> jane's INBOX in %v", time.Since(start).Round(time.Millisecond))

	inbox := fetchFolder(t, customer, "INBOX")
	if len(inbox) != 1 {
		t.Fatalf("jane's INBOX holds %d messages, want 1", len(inbox))
	}
	got := inbox[0]
	h := got.Header()
	t.Logf("reply headers: From=%q To=%q Subject=%q Message-ID=%q In-Reply-To=%q References=%q",
		h.Get("From"), h.Get("To"), h.Get("Subject"), h.Get("Message-Id"), h.Get("In-Reply-To"), h.Get("References"))
	origID := "<" + orig.MessageID + ">"
	if v := strings.TrimSpace(h.Get("In-Reply-To")); v != origID {
		t.Errorf("In-Reply-To = %q, want %q", v, origID)
	}
	if refs := strings.Fields(h.Get("References")); !slices.Contains(refs, origID) {
		t.Errorf("References = %q, does not contain %q", h.Get("References"), origID)
	}
	if s := decodedHeader(h.Get("Subject")); s != "Re: "+orig.Subject {
		t.Errorf("Subject = %q, want %q", s, "Re: "+orig.Subject)
	}
	from, err := mail.ParseAddress(h.Get("From"))
	if err != nil {
		t.Errorf("From %q: %v", h.Get("From"), err)
	} else if from.Name != "Olivia (Support)" || from.Address != supportUser {
		t.Errorf("From = %q <%s>, want \"Olivia (Support)\" <%s>", from.Name, from.Address, supportUser)
	}
	if to, err := mail.ParseAddress(h.Get("To")); err != nil || to.Address != customer {
		t.Errorf("To = %q, want %s", h.Get("To"), customer)
	}
	if v := h.Get("Auto-Submitted"); v != "" {
		t.Errorf("the reply carries Auto-Submitted: %s (an operator's answer is not automatic)", v)
	}
	replyID := strings.TrimSpace(h.Get("Message-Id"))
	if replyID == "" || replyID == origID {
		t.Errorf("reply Message-ID = %q", replyID)
	}
	text, err := plainText(got.Raw)
	if err != nil {
		t.Errorf("parsing the reply: %v", err)
	}
	if !strings.Contains(text, reply.Text) {
		t.Errorf("the reply's text/plain part does not contain the operator's text %q:\n%s", reply.Text, text)
	}

	// 4. jane keeps her own email too; both must form ONE thread.
	deliver(t, customer, origRaw)
	for _, alg := range []imap.ThreadAlgorithm{imap.ThreadReferences, "REFS"} {
		th, ok := threads(t, customer, "INBOX", alg)
		if !ok {
			t.Logf("Dovecot does not offer THREAD=%s; skipped", alg)
			continue
		}
		t.Logf("UID THREAD %s UTF-8 ALL in jane's INBOX: %v", alg, th)
		if len(th) != 1 || len(th[0]) != 2 {
			t.Errorf("UID THREAD %s: want the original and the reply in one thread, got %v", alg, th)
		}
	}

	// 5. The reply is in the support mailbox's Sent folder, once.
	q := []string{"header", "Message-ID", strings.Trim(replyID, "<>")}
	if n, ok := waitCount(t, supportUser, "Sent", 1, 30*time.Second, q...); !ok {
		t.Errorf("support's Sent folder holds %d copies of the reply %s, want 1", n, replyID)
	}
	if n := countMessages(t, supportUser, "Sent", "all"); n != 1 {
		t.Errorf("support's Sent folder holds %d messages, want 1", n)
	}

	// 6. Counts: one post, one email out, nothing pending or failed. Once
	// settled and Postfix's queue is empty, a duplicate would be counted.
	st, ok := g.waitSettled(t, 30*time.Second, 1)
	if !ok {
		t.Errorf("not settled within 30s: %s", st)
	}
	if !waitPostfixEmpty(t, 30*time.Second) {
		t.Errorf("Postfix's queue not empty within 30s:\n%s", postfixQueue())
	}
	t.Logf("status: %s", st)
	if st.Outbox[outboxSent] != 1 || st.OutboxPending() != 0 || st.Outbox[outboxFailed] != 0 || sum(st.Outbox) != 1 {
		t.Errorf("outbox counts %s, want exactly 1 sent", counts(st.Outbox))
	}
	if n := len(ul.Accepted()); n != 1 {
		t.Errorf("Userlike received %d posts, want 1 (the customer's email):\n%s", n, describePosts(ul.Accepted()))
	}
	if n := countMessages(t, customer, "INBOX", "all"); n != 2 {
		t.Errorf("jane's INBOX holds %d messages, want 2 (the reply and her own copy)", n)
	}
	if !g.Running() {
		t.Errorf("mailgate exited; log:\n%s", g.LogTail(40))
	}
}

// sum adds the values of m.
func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
