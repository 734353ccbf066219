//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

// startScenario empties the support mailbox, starts a fake Userlike and a
// mailgate on a fresh store, and waits until mailgate's IMAP connection is
// up. It skips the test when mailgate cannot run yet.
func startScenario(t *testing.T, opts mailgateOptions) (*fakeUserlike, *mailgate) {
	t.Helper()
	resetMailbox(t, supportUser)
	ul := newFakeUserlike(t, inboundToken)
	opts.InboundURL = ul.InboundURL()
	g := newMailgate(t, testDir(t), opts)
	requireDaemon(t, g.Start())
	if !g.WaitLog("imap: connected", 30*time.Second) {
		t.Fatalf("mailgate did not log %q within 30s; log:\n%s", "imap: connected", g.LogTail(40))
	}
	return ul, g
}

// textMatches reports whether a posted text is the email's: the body, with
// the subject line first when mailgate starts a conversation with it.
func textMatches(got, subject, body string) bool {
	return got == body || got == "Subject: "+subject+"\n\n"+body
}

// TestInboundRoundTrip delivers three emails (two senders, one with a PDF)
// into the watched mailbox while mailgate runs, and checks what reaches
// Userlike: each email once, with the sender's lower-cased address, the
// decoded display name and the text, and the attachment as a media URL
// that serves the original bytes.
func TestInboundRoundTrip(t *testing.T) {
	ul, g := startScenario(t, mailgateOptions{})

	pdf := testPDF(20000)
	pdfSum := sha256.Sum256(pdf)
	mails := []struct {
		email
		wantEmail string
	}{
		{email{FromName: "Jane Doe", From: "jane@example.test", Subject: "Order 1234 missing",
			Body: "Hello, my order 1234 has not arrived yet. Where is it?"}, "jane@example.test"},
		{email{FromName: "Jürgen Groß", From: "bob@example.test", Subject: "Invoice for order 77",
			Body:       "The invoice you sent has the wrong address; it is attached.",
			Attachment: &attachment{Filename: "invoice-77.pdf", ContentType: "application/pdf", Data: pdf}}, "bob@example.test"},
		{email{FromName: "Jane Doe", From: "Jane@Example.TEST", Subject: "New address",
			Body: "Please send everything to 5 Elm Street from now on."}, "jane@example.test"},
	}
	start := time.Now()
	for _, m := range mails {
		deliver(t, supportUser, m.raw())
	}

	// 3 text posts and 1 media post.
	posts, ok := ul.WaitAccepted(60*time.Second, func(p []inboundPost) bool { return len(p) >= 4 })
	if !ok {
		t.Fatalf("want 4 posts at Userlike within 60s, got %d:\n%smailgate log:\n%s",
			len(posts), describePosts(ul.All()), g.LogTail(60))
	}
	t.Logf("4 posts arrived %v after the first delivery", time.Since(start).Round(time.Millisecond))
	// Settled, a duplicate would be among the posts.
	if st, ok := g.waitSettled(t, 30*time.Second, len(mails)); !ok {
		t.Fatalf("not settled within 30s of the 4th post: %s\nlog:\n%s", st, g.LogTail(40))
	}
	posts = ul.Accepted()
	t.Logf("posts:\n%s", describePosts(posts))
	if len(posts) != 4 {
		t.Errorf("want exactly 4 posts, got %d:\n%s", len(posts), describePosts(posts))
	}
	if n := ul.BadTokens(); n != 0 {
		t.Errorf("%d POSTs had a wrong API-SECURITY-TOKEN", n)
	}

	for _, m := range mails {
		var found []inboundPost
		for _, p := range posts {
			if p.Text != "" && strings.Contains(p.Text, m.Body) {
				found = append(found, p)
			}
		}
		if len(found) != 1 {
			t.Errorf("email %q: want 1 text post, got %d:\n%s", m.Subject, len(found), describePosts(found))
			continue
		}
		p := found[0]
		if p.Email != m.wantEmail {
			t.Errorf("email %q: posted email = %q, want %q", m.Subject, p.Email, m.wantEmail)
		}
		if p.Name != m.FromName {
			t.Errorf("email %q: posted name = %q, want %q", m.Subject, p.Name, m.FromName)
		}
		if !textMatches(p.Text, m.Subject, m.Body) {
			t.Errorf("email %q: posted text = %q, want %q (optionally after \"Subject: %s\\n\\n\")", m.Subject, p.Text, m.Body, m.Subject)
		}
		if p.URL != "" {
			t.Errorf("email %q: text post also has url %q", m.Subject, p.URL)
		}
	}

	// The attachment: one url post from bob, after bob's text.
	var bobText, bobMedia = -1, -1
	var media []inboundPost
	for i, p := range posts {
		if p.Email != "bob@example.test" {
			continue
		}
		if p.URL != "" {
			bobMedia = i
			media = append(media, p)
		} else if bobText < 0 {
			bobText = i
		}
	}
	if len(media) != 1 {
		t.Fatalf("want 1 media post, got %d:\n%s", len(media), describePosts(posts))
	}
	if bobText < 0 || bobMedia < bobText {
		t.Errorf("bob's media post (#%d) does not follow his text post (#%d)", bobMedia, bobText)
	}
	if media[0].Name != "Jürgen Groß" || media[0].Text != "" {
		t.Errorf("media post: name %q, text %q; want the sender's name and no text", media[0].Name, media[0].Text)
	}
	if !strings.HasPrefix(media[0].URL, "http://"+g.listen+"/media/") {
		t.Errorf("media URL %q is not under http://%s/media/", media[0].URL, g.listen)
	}
	sum, ctype, err := fetchMedia(media[0].URL)
	if err != nil {
		t.Fatalf("fetching the media URL as Userlike would: %v", err)
	}
	if want := hex.EncodeToString(pdfSum[:]); sum != want {
		t.Errorf("media sha256 = %s, want %s (the original PDF)", sum, want)
	}
	if !strings.HasPrefix(ctype, "application/pdf") {
		t.Errorf("media Content-Type = %q, want application/pdf", ctype)
	}
	// A tampered URL must not serve the file.
	if _, _, err := fetchMedia(tamper(media[0].URL)); err == nil {
		t.Errorf("a media URL with a changed signature still serves the file")
	}

	// After posting, the default action marks the emails \Seen.
	deadline := time.Now().Add(30 * time.Second)
	for {
		unseen := countMessages(t, supportUser, "INBOX", "unseen")
		if unseen == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of 3 emails still unseen in INBOX 30s after posting (imap.after = \"seen\")", unseen)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := countMessages(t, supportUser, "INBOX", "all"); n != 3 {
		t.Errorf("INBOX holds %d messages, want the 3 delivered", n)
	}
	if !g.Running() {
		t.Errorf("mailgate exited; log:\n%s", g.LogTail(40))
	}
}

// tamper changes the last character of the URL's signature.
func tamper(url string) string {
	if url == "" {
		return url
	}
	last := url[len(url)-1]
	repl := byte('A')
	if last == 'A' {
		repl = 'B'
	}
	return url[:len(url)-1] + string(repl)
}

// senderOf is the address of customer n (1..50) of the mailbox.
func senderOf(n int) string { return fmt.Sprintf("cust%d@example.test", n) }
