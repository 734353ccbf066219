package inbound

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"mailgate/mailaddr"
	"mailgate/mailparse"
	"mailgate/mailtext"
	"mailgate/verify"
)

func newTestAnalyzer(t testing.TB) *Analyzer {
	v, err := verify.New(verify.Options{TrustedAuthservIDs: []string{"mx.example.test"}, Resolver: noDNS{}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAnalyzer(AnalyzerOptions{Verifier: v, SubjectLine: true})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type noDNS struct{}

func (noDNS) LookupTXT(ctx context.Context, name string) ([]string, error) { return nil, nil }

func TestAnalyze(t *testing.T) {
	const ar = "Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\n"
	tests := []struct {
		name       string
		raw        string
		action     Action
		text       string
		class      string
		newThread  bool
		wantReason string
	}{
		{
			name:      "new conversation",
			raw:       ar + "From: Jane <jane@example.test>\r\nSubject: Broken\r\nMessage-ID: <a@x>\r\n\r\nIt is broken.\r\n",
			action:    ActionPost,
			text:      "Subject: Broken\n\nIt is broken.",
			newThread: true,
		},
		{
			name:   "reply is trimmed, no subject line",
			raw:    ar + "From: Jane <jane@example.test>\r\nSubject: Re: Broken\r\nIn-Reply-To: <b@x>\r\n\r\nStill broken.\r\n\r\nOn Mon, 1 Jan 2026, Support <s@example.test> wrote:\r\n> Try again\r\n",
			action: ActionPost,
			text:   "Still broken.",
		},
		{
			name:   "auto reply skipped",
			raw:    ar + "From: Jane <jane@example.test>\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\n\r\nAway.\r\n",
			action: ActionSkip,
			class:  "auto-reply",
		},
		{
			name:   "bounce skipped",
			raw:    "From: MAILER-DAEMON@example.test\r\nSubject: Undelivered\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b--\r\n",
			action: ActionSkip,
			class:  "bounce",
		},
		{
			name:   "list mail skipped",
			raw:    ar + "From: News <news@example.test>\r\nList-Id: <news.example.test>\r\nSubject: Weekly\r\n\r\nNews.\r\n",
			action: ActionSkip,
			class:  "list",
		},
		{
			name:       "unverified sender quarantined",
			raw:        "From: Jane <jane@example.test>\r\nSubject: Hi\r\n\r\nHi.\r\n",
			action:     ActionQuarantine,
			wantReason: "sender not verified",
		},
		{
			name:       "garbage is dead",
			raw:        "\x00\x01\x02 no header at all",
			action:     ActionDead,
			wantReason: "unparseable",
		},
		{
			name:   "empty body still posts something",
			raw:    ar + "From: Jane <jane@example.test>\r\nIn-Reply-To: <q@x>\r\n\r\n",
			action: ActionPost,
			text:   "[mailgate] The email had no text.",
		},
	}
	a := newTestAnalyzer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := a.Analyze(context.Background(), []byte(tt.raw))
			if d.Action != tt.action {
				t.Errorf("action %s (%s), want %s", d.Action, d.Reason, tt.action)
			}
			if tt.text != "" && d.Text != tt.text {
				t.Errorf("text %q, want %q", d.Text, tt.text)
			}
			if tt.class != "" && string(d.Classification.Class) != tt.class {
				t.Errorf("class %q, want %q", d.Classification.Class, tt.class)
			}
			if tt.action == ActionPost && d.NewThread != tt.newThread {
				t.Errorf("new thread %v, want %v", d.NewThread, tt.newThread)
			}
			if !strings.Contains(d.Reason, tt.wantReason) {
				t.Errorf("reason %q, want it to contain %q", d.Reason, tt.wantReason)
			}
		})
	}
}

func FuzzAnalyze(f *testing.F) {
	files, _ := filepath.Glob("mailparse/testdata/*.eml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("From: a@b\r\n\r\nhi"))
	v, err := verify.New(verify.Options{TrustedAuthservIDs: []string{"mx.example.test"}, Resolver: noDNS{}})
	if err != nil {
		f.Fatal(err)
	}
	own := []string{"support@example.com"}
	a, err := NewAnalyzer(AnalyzerOptions{Verifier: v, SubjectLine: true, ReplyCc: true, OwnAddresses: own})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := a.Analyze(context.Background(), raw)
		if len(d.Cc) > MaxCc {
			t.Fatalf("%d CCs", len(d.Cc))
		}
		for _, c := range d.Cc {
			if !mailaddr.Plain(c) || mailaddr.Key(c) == mailaddr.Key(own[0]) || (d.Contact.Email != "" && mailaddr.Key(c) == mailaddr.Key(d.Contact.Email)) {
				t.Fatalf("CC %q kept (contact %q)", c, d.Contact.Email)
			}
		}
		switch d.Action {
		case ActionPost, ActionSkip, ActionQuarantine, ActionDead:
		default:
			t.Fatalf("action %q", d.Action)
		}
		if d.Action == ActionPost {
			if d.Contact.Email == "" {
				t.Fatal("post without a contact")
			}
			if d.Text == "" && !d.hasMedia() {
				t.Fatal("post with nothing to post")
			}
		}
		if !utf8.ValidString(d.Text) || !utf8.ValidString(d.Contact.Name) {
			t.Fatalf("invalid UTF-8 in %q / %q", d.Text, d.Contact.Name)
		}
		if d.DedupeKey == "" {
			t.Fatal("no dedupe key")
		}
	})
}

func BenchmarkAnalyze(b *testing.B) {
	raw := []byte("Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\nFrom: Jane <jane@example.test>\r\nSubject: Re: Broken\r\nIn-Reply-To: <b@x>\r\n\r\n" +
		strings.Repeat("Still broken, here is what I did.\r\n", 100) + "\r\nOn Mon, 1 Jan 2026, Support <s@example.test> wrote:\r\n" + strings.Repeat("> Try again\r\n", 100))
	a := newTestAnalyzer(b)
	b.ReportAllocs()
	for b.Loop() {
		a.Analyze(context.Background(), raw)
	}
}

func TestAnalyzeCutsLongText(t *testing.T) {
	a := newTestAnalyzer(t)
	raw := "Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\nFrom: Jane <jane@example.test>\r\nIn-Reply-To: <q@x>\r\n\r\n" + strings.Repeat("ü", 40000) + "\r\n"
	d := a.Analyze(context.Background(), []byte(raw))
	if len(d.Text) > MaxPostText+200 || !strings.HasSuffix(d.Text, "The whole email stays in the mailbox.") || !utf8.ValidString(d.Text) {
		t.Errorf("text of %d bytes ends %q", len(d.Text), d.Text[len(d.Text)-60:])
	}
	if !strings.HasPrefix(d.FullText, strings.Repeat("ü", 40000)) {
		t.Error("full text was cut too")
	}
}

func TestAnalyzeTrimmedBy(t *testing.T) {
	const ar = "Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\n"
	a := newTestAnalyzer(t)
	tests := []struct {
		name, raw, text string
		rules           []string
	}{
		{
			name:  "reply",
			raw:   ar + "From: Jane <jane@example.test>\r\nSubject: Re: Broken\r\nIn-Reply-To: <b@x>\r\n\r\nStill broken.\r\n\r\nOn Mon, 1 Jan 2026, Support <s@example.test> wrote:\r\n> Try again\r\n",
			text:  "Still broken.",
			rules: []string{mailtext.RuleAttribution, mailtext.RuleTrailingQuote},
		},
		{
			name: "outlook forward by its subject",
			raw: ar + "From: Jane <jane@example.test>\r\nSubject: FW: Delivery failed\r\nIn-Reply-To: <b@x>\r\n\r\nSee below.\r\n\r\n" +
				"From: Courier <c@courier.example>\r\nSent: Tuesday, March 3, 2026 10:15 AM\r\nTo: Jane <jane@example.test>\r\nSubject: Delivery failed\r\n\r\nWe could not deliver.\r\n",
			text:  "See below.\n\nForwarded: from Courier <c@courier.example>, Tuesday, March 3, 2026 10:15 AM, Delivery failed\n\nWe could not deliver.",
			rules: []string{mailtext.RuleForward},
		},
		{
			name: "outlook html forward by its subject",
			raw: ar + "From: Jane <jane@example.test>\r\nSubject: WG: Lieferung\r\nIn-Reply-To: <b@x>\r\nContent-Type: text/html\r\n\r\n" +
				`<div>Zur Info.</div><hr><div id="divRplyFwdMsg"><b>Von:</b> Kurier &lt;k@courier.example&gt;<br><b>Gesendet:</b> Dienstag, 3. März 2026 10:15<br>` +
				`<b>An:</b> Jane<br><b>Betreff:</b> Lieferung</div><div>Zustellung fehlgeschlagen.</div>` + "\r\n",
			text:  "Zur Info.\n\nForwarded: from Kurier <k@courier.example>, Dienstag, 3. März 2026 10:15, Lieferung\n\nZustellung fehlgeschlagen.",
			rules: []string{mailtext.RuleForward},
		},
		{
			name: "html quote",
			raw: ar + "From: Jane <jane@example.test>\r\nSubject: Re: Broken\r\nIn-Reply-To: <b@x>\r\nContent-Type: text/html\r\n\r\n" +
				`<div>Fixed.</div><div class="gmail_quote">On Mon, 1 Jan 2026, Support wrote:<blockquote class="gmail_quote">Try again</blockquote></div>` + "\r\n",
			text:  "Fixed.",
			rules: []string{mailtext.RuleHTMLQuote},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := a.Analyze(context.Background(), []byte(tt.raw))
			if d.Text != tt.text {
				t.Errorf("text %q, want %q", d.Text, tt.text)
			}
			var rules []string
			for _, c := range d.TrimmedBy {
				rules = append(rules, c.Rule)
			}
			if strings.Join(rules, ",") != strings.Join(tt.rules, ",") {
				t.Errorf("trimmed_by %+v, want rules %v", d.TrimmedBy, tt.rules)
			}
			if !d.Trimmed {
				t.Errorf("not trimmed")
			}
		})
	}
}

// TestAnalyzeBounceTrust: a delivery report may fail a reply only when the
// mailbox provider delivered it with a null sender, or its sender is
// verified in the relay's own domain. A forged one is never trusted.
func TestAnalyzeBounceTrust(t *testing.T) {
	v, err := verify.New(verify.Options{TrustedAuthservIDs: []string{"mx.example.test"}, Resolver: noDNS{}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAnalyzer(AnalyzerOptions{Verifier: v, BounceDomains: []string{"acme.test", "smtp.relay.test"}})
	if err != nil {
		t.Fatal(err)
	}
	report := "MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n" +
		"\r\n--B\r\nContent-Type: text/plain\r\n\r\nCall +1 555 0100 to claim your refund.\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.evil.test\r\n\r\n" +
		"Final-Recipient: rfc822; jane@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
		"Diagnostic-Code: smtp; 550 call +1 555 0100 for your refund\r\n\r\n--B--\r\n"
	tests := []struct {
		name    string
		headers string
		trusted bool
	}{
		{"forged: unverified mailer-daemon", "From: MAILER-DAEMON@evil.test\r\nSubject: Undelivered Mail\r\n", false},
		{"forged: verified but foreign domain",
			"Authentication-Results: mx.example.test; dmarc=pass header.from=evil.test\r\nFrom: MAILER-DAEMON@evil.test\r\nSubject: Undelivered Mail\r\n", false},
		{"forged: null Return-Path below a real one",
			"Return-Path: <mallory@evil.test>\r\nReturn-Path: <>\r\nFrom: MAILER-DAEMON@evil.test\r\nSubject: Undelivered Mail\r\n", false},
		{"forged: look-alike relay domain",
			"Authentication-Results: mx.example.test; dmarc=pass header.from=notacme.test\r\nFrom: MAILER-DAEMON@notacme.test\r\nSubject: Undelivered Mail\r\n", false},
		{"null sender as delivered", "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.com\r\nSubject: Undelivered Mail\r\n", true},
		{"verified relay domain",
			"Authentication-Results: mx.example.test; dmarc=pass header.from=acme.test\r\nFrom: postmaster@acme.test\r\nSubject: Undelivered Mail\r\n", true},
		{"verified relay host",
			"Authentication-Results: mx.example.test; dmarc=pass header.from=smtp.relay.test\r\nFrom: MAILER-DAEMON@smtp.relay.test\r\nSubject: Undelivered Mail\r\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := a.Analyze(context.Background(), []byte(tt.headers+report))
			if d.Classification.Class != "bounce" || d.Report == nil {
				t.Fatalf("not a bounce with a report: %+v", d.Classification)
			}
			if d.Action == ActionPost {
				t.Fatalf("a bounce is posted: %+v", d)
			}
			if got := d.BounceTrusted(); got != tt.trusted {
				t.Errorf("BounceTrusted = %v (%s), want %v", got, d.Bounce, tt.trusted)
			}
		})
	}
}

// TestAnalyzeHeaderBomb: an email whose header (or a part's) is over the
// shared 1 MiB limit is dead-lettered with that reason, at bounded cost.
func TestAnalyzeHeaderBomb(t *testing.T) {
	if verify.MaxHeaderBytes != mailparse.MaxHeaderBytes {
		t.Fatalf("verify reads %d header bytes, mailparse %d: the limits must match", verify.MaxHeaderBytes, mailparse.MaxHeaderBytes)
	}
	a := newTestAnalyzer(t)
	for _, inPart := range []bool{false, true} {
		var b strings.Builder
		b.WriteString("Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\nFrom: jane@example.test\r\n")
		if inPart {
			b.WriteString("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n")
		}
		for b.Len() < 40<<20 {
			b.WriteString("X: y\r\n")
		}
		b.WriteString("\r\nbody\r\n")
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d := a.Analyze(context.Background(), []byte(b.String()))
		runtime.ReadMemStats(&after)
		if d.Action != ActionDead || !strings.Contains(d.Reason, "header larger than 1 MiB") {
			t.Errorf("inPart %v: action %s, reason %q; want dead for the header size", inPart, d.Action, d.Reason)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
			t.Errorf("inPart %v: analyzing allocated %d MiB, want under 256 MiB", inPart, alloc>>20)
		}
	}
}

// TestAnalyzeContactForm: a verified email from a listed form sender is
// posted under its Reply-To, flagged; anything else about Reply-To leaves
// the verified From as the contact.
func TestAnalyzeContactForm(t *testing.T) {
	v, err := verify.New(verify.Options{TrustedAuthservIDs: []string{"mx.example.test"}, Resolver: noDNS{}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAnalyzer(AnalyzerOptions{Verifier: v, SubjectLine: true, FormSenders: []string{"forms@company.test"}})
	if err != nil {
		t.Fatal(err)
	}
	const pass = "Authentication-Results: mx.example.test; dmarc=pass header.from=company.test\r\n"
	tests := []struct {
		name    string
		raw     string
		action  Action
		contact string
		flagged bool
	}{
		{"verified form sender", pass + "From: Website <Forms@Company.test>\r\nReply-To: Visitor <Visitor@Gmail.test>\r\nSubject: Question\r\n\r\nHello?\r\n",
			ActionPost, "visitor@gmail.test", true},
		{"form sender not verified", "From: forms@company.test\r\nReply-To: visitor@gmail.test\r\nSubject: Question\r\n\r\nHello?\r\n",
			ActionQuarantine, "forms@company.test", false},
		{"form sender forged in another domain's pass", "Authentication-Results: mx.example.test; dmarc=pass header.from=evil.test\r\nFrom: forms@company.test\r\nReply-To: visitor@gmail.test\r\nSubject: Question\r\n\r\nHello?\r\n",
			ActionQuarantine, "forms@company.test", false},
		{"form without Reply-To", pass + "From: forms@company.test\r\nSubject: Question\r\n\r\nHello?\r\n",
			ActionQuarantine, "forms@company.test", false},
		{"form whose Reply-To is the form", pass + "From: forms@company.test\r\nReply-To: FORMS@company.test\r\nSubject: Question\r\n\r\nHello?\r\n",
			ActionQuarantine, "forms@company.test", false},
		{"other verified sender with Reply-To", pass + "From: sales@company.test\r\nReply-To: visitor@gmail.test\r\nSubject: Question\r\n\r\nHello?\r\n",
			ActionPost, "sales@company.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := a.Analyze(context.Background(), []byte(tt.raw))
			if d.Action != tt.action || d.Contact.Email != tt.contact {
				t.Fatalf("action %s contact %q (%s), want %s %q", d.Action, d.Contact.Email, d.Reason, tt.action, tt.contact)
			}
			if got := strings.HasPrefix(d.Text, ViaFormLine+"\n\n"); got != tt.flagged || (d.ViaForm != "") != tt.flagged {
				t.Errorf("flagged = %v (via %q), want %v; text %q", got, d.ViaForm, tt.flagged, d.Text)
			}
			if tt.flagged && !strings.Contains(d.Text, "Subject: Question\n\nHello?") {
				t.Errorf("text %q lost the email", d.Text)
			}
		})
	}
}

// TestDedupeKeyAsBefore: dedupeKey hashes the parts as the concatenation
// it used to build, with and without a Message-ID.
func TestDedupeKeyAsBefore(t *testing.T) {
	for _, tc := range []struct{ raw, text string }{
		{"From: Jane <Jane@Example.com>\r\nDate: Fri, 04 Dec 2026 14:00:00 +0000\r\nSubject: Hi\r\nMessage-ID: <a.1@example.com>\r\n\r\nbody\r\n", "body"},
		{"From: Jane <jane@example.com>\r\nSubject: No id\r\n\r\ntext\r\n", "text of the email"},
		{"Subject: nobody\r\n\r\nx\r\n", ""},
	} {
		email, err := mailparse.Parse(context.Background(), strings.NewReader(tc.raw), mailparse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var from string
		if len(email.From) > 0 {
			from = mailaddr.Key(email.From[0].Address)
		}
		date := email.Header.Get("Date")
		want := "sum:" + hashHex([]byte(from+"\x00"+date+"\x00"+email.Subject+"\x00"+tc.text))
		if email.MessageID != "" {
			want = "mid:" + email.MessageID + ":" + hashHex([]byte(from + "\x00" + date + "\x00" + email.Subject))[:16]
		}
		if got := dedupeKey(email, tc.text); got != want {
			t.Errorf("dedupeKey(%q) = %s, want %s", tc.raw, got, want)
		}
	}
}
