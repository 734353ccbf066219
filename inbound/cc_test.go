package inbound

import (
	"context"
	"strings"
	"testing"

	"mailgate/verify"
)

func TestAnalyzeCc(t *testing.T) {
	const ar = "Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\n"
	const head = ar + "From: Jane <jane@example.test>\r\nTo: Support <support@example.com>\r\nSubject: Broken\r\n"
	tests := []struct {
		name     string
		replyCc  bool
		noVerify bool // verify.require = "none": the sender is not verified
		raw      string
		cc       []string
		keep     bool
		text     string
	}{
		{
			name:    "new conversation states the CC list after the subject",
			replyCc: true,
			raw:     head + "Cc: Bob <bob@example.org>, support@example.com, Carol <carol@example.net>\r\n\r\nIt is broken.\r\n",
			cc:      []string{"bob@example.org", "carol@example.net"},
			text:    "Subject: Broken\nCC: bob@example.org, carol@example.net\n\nIt is broken.",
		},
		{
			name:    "only own addresses in Cc: no line",
			replyCc: true,
			raw:     head + "Cc: support@example.com, jane@example.test\r\n\r\nIt is broken.\r\n",
			text:    "Subject: Broken\n\nIt is broken.",
		},
		{
			name:     "an unverified sender copies nobody and changes nothing",
			replyCc:  true,
			noVerify: true,
			raw:      "From: Jane <jane@example.test>\r\nSubject: Broken\r\nCc: eve@example.org\r\n\r\nIt is broken.\r\n",
			keep:     true,
			text:     "Subject: Broken\n\nIt is broken.",
		},
		{
			name: "reply_cc none keeps no CC and says nothing",
			raw:  head + "Cc: bob@example.org\r\n\r\nIt is broken.\r\n",
			text: "Subject: Broken\n\nIt is broken.",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vo := verify.Options{TrustedAuthservIDs: []string{"mx.example.test"}, Resolver: noDNS{}}
			if tc.noVerify {
				vo.Require = "none"
			}
			v, err := verify.New(vo)
			if err != nil {
				t.Fatal(err)
			}
			a, err := NewAnalyzer(AnalyzerOptions{Verifier: v, SubjectLine: true, ReplyCc: tc.replyCc, OwnAddresses: []string{"support@example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			d := a.Analyze(context.Background(), []byte(tc.raw))
			if d.Action != ActionPost {
				t.Fatalf("action %s: %s", d.Action, d.Reason)
			}
			if strings.Join(d.Cc, ",") != strings.Join(tc.cc, ",") {
				t.Errorf("Cc = %q, want %q", d.Cc, tc.cc)
			}
			if d.KeepCc != tc.keep {
				t.Errorf("KeepCc = %v, want %v", d.KeepCc, tc.keep)
			}
			if d.Text != tc.text {
				t.Errorf("Text = %q, want %q", d.Text, tc.text)
			}
		})
	}
}

func TestSetThreadCcLine(t *testing.T) {
	tests := []struct {
		name        string
		cc          []string
		newThread   bool
		changed     bool
		subjectLine bool
		want        string
	}{
		{name: "continued, same list", cc: []string{"b@example.org"}, want: "Body"},
		{name: "continued, list changed", cc: []string{"b@example.org", "c@example.org"}, changed: true,
			want: "CC: b@example.org, c@example.org\n\nBody"},
		{name: "continued, list cleared", changed: true, want: "CC: none (replies go to the contact only)\n\nBody"},
		{name: "new, no subject line", cc: []string{"b@example.org"}, newThread: true, want: "CC: b@example.org\n\nBody"},
		{name: "new without CC", newThread: true, subjectLine: true, want: "Subject: S\n\nBody"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &Decision{Subject: "S", NewText: "Body", Cc: tc.cc, CcChanged: tc.changed}
			d.SetThread(tc.newThread, tc.subjectLine)
			if d.Text != tc.want {
				t.Errorf("Text = %q, want %q", d.Text, tc.want)
			}
		})
	}
}
