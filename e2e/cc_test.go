//go:build e2e

package e2e

import (
	"net/mail"
	"strings"
	"testing"
	"time"
)

// TestReplyCc: jane@ mails support@ through Postfix with bob@ and cust7@
// in Cc, and also support@ itself and reject@ (which Postfix refuses with
// 550). The operator sees the CC line; the answer reaches jane, bob and
// cust7 through Postfix, threaded under jane's email, with all three
// colleagues in Cc; reject@'s refusal leaves the reply sent and tells the
// operator; support@ never gets a copy.
func TestReplyCc(t *testing.T) {
	const customer = "jane@example.test"
	colleagues := []string{"bob@example.test", "cust7@example.test"}
	resetMailboxes(t, customer, colleagues[0], colleagues[1])
	// Only a verified sender's Cc is kept: the test stands in for the
	// trusted MTA's Authentication-Results, as TestSpoofing does.
	ul, g := startScenario(t, mailgateOptions{SMTP: `coalesce = "0s"`, Verify: `trusted_authserv_ids = ["mx.example.test"]`})

	orig := email{
		FromName:  "Jane Doe",
		From:      customer,
		Subject:   "Invoice 88 lists the wrong address",
		Body:      "Please send a corrected invoice (cc-question).",
		MessageID: "cc-" + randomToken() + "@client.example.test",
	}
	raw := append([]byte("Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\n"+
		"Cc: Bob <bob@example.test>, Support <SUPPORT@example.test>,\r\n cust7@example.test, reject@example.test\r\n"), orig.raw()...)
	sendSMTP(t, customer, []string{supportUser}, raw)
	posts, ok := ul.WaitAccepted(60*time.Second, func(p []inboundPost) bool { return countMarker(p, "cc-question") > 0 })
	if !ok {
		t.Fatalf("the customer's email did not reach Userlike within 60s\npostfix queue:\n%s\nposts:\n%smailgate log:\n%s",
			postfixQueue(), describePosts(ul.All()), g.LogTail(40))
	}
	want := "Subject: " + orig.Subject + "\nCC: bob@example.test, cust7@example.test, reject@example.test\n\n" + orig.Body
	if got := posts[len(posts)-1].Text; got != want {
		t.Errorf("posted text = %q, want %q", got, want)
	}

	g.sendReply(t, operatorReply{ID: "op-cc-1", Contact: customer, Operator: "Olivia", Text: "Done, the corrected invoice is attached (cc-answer)."})
	for _, u := range append([]string{customer}, colleagues...) {
		if n, ok := waitCount(t, u, "INBOX", 1, 60*time.Second); !ok {
			t.Fatalf("%s's INBOX holds %d messages 60s after the reply, want 1\npostfix queue:\n%s\nmailgate log:\n%s",
				u, n, postfixQueue(), g.LogTail(40))
		}
	}
	notice := "[mailgate] Your reply could not be delivered to reject@example.test (CC): 550 5.1.1 "
	if _, ok := ul.WaitAccepted(30*time.Second, func(p []inboundPost) bool {
		return len(p) >= 2 && p[len(p)-1].Email == customer && strings.HasPrefix(p[len(p)-1].Text, notice)
	}); !ok {
		t.Errorf("no notice %q for the refused copy:\n%s", notice, describePosts(ul.All()))
	}

	h := fetchFolder(t, customer, "INBOX")[0].Header()
	t.Logf("reply headers: To=%q Cc=%q In-Reply-To=%q", h.Get("To"), h.Get("Cc"), h.Get("In-Reply-To"))
	cc, err := mail.ParseAddressList(h.Get("Cc"))
	if err != nil {
		t.Fatalf("Cc %q: %v", h.Get("Cc"), err)
	}
	var got []string
	for _, a := range cc {
		got = append(got, a.Address)
	}
	if strings.Join(got, ",") != "bob@example.test,cust7@example.test,reject@example.test" {
		t.Errorf("Cc = %q", got)
	}
	if to, err := mail.ParseAddress(h.Get("To")); err != nil || to.Address != customer {
		t.Errorf("To = %q", h.Get("To"))
	}
	if v := strings.TrimSpace(h.Get("In-Reply-To")); v != "<"+orig.MessageID+">" {
		t.Errorf("In-Reply-To = %q, want <%s>", v, orig.MessageID)
	}
	for _, u := range colleagues {
		if m := fetchFolder(t, u, "INBOX"); len(m) != 1 || m[0].Header().Get("Message-Id") != h.Get("Message-Id") {
			t.Errorf("%s did not get the reply itself", u)
		}
	}

	// Postfix has delivered everything it accepted: support's INBOX holds
	// the customer's email only, and the reply sits in Sent.
	flushPostfix(t)
	deadline := time.Now().Add(30 * time.Second)
	for !postfixQueueEmpty(t) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if n := countMessages(t, supportUser, "INBOX", "all"); n != 1 {
		t.Errorf("support's INBOX holds %d messages, want 1 (the reply must not be copied to support)", n)
	}
	if st := g.Status(t); st.Outbox[outboxSent] != 1 || st.Outbox[outboxFailed] != 0 {
		t.Errorf("outbox counts %s, want exactly 1 sent", counts(st.Outbox))
	}
}
