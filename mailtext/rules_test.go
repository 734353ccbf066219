package mailtext

import (
	"strings"
	"testing"
)

// ruleCases holds, per rule, a body that the rule must cut and the text that
// must remain.
var ruleCases = []struct {
	rule string
	in   string
	want string
}{
	{RuleAttribution, "Fine.\n\nOn Tue, 3 Mar 2026 at 10:15, Jane <jane@example.com> wrote:\n> ok?\n", "Fine."},
	{RuleAttribution, "Fine.\n\nJane <jane@example.com> schrieb:\n> ok?\n", "Fine."},
	{RuleAttribution, "Fine.\n\n2013/7/20 Jane <jane@example.com>\n> ok?\n", "Fine."},
	{RuleAttribution, "Fine.\n\nOn Tue, 3 Mar 2026 at 10:15, Jane <jane@example.com> wrote:\nok?\n", "Fine."},
	{RuleTrailingQuote, "Fine.\n\n> ok?\n> sure?\n", "Fine."},
	{RuleTrailingQuote, "Fine.\n\n| ok?\n|\n| sure?\n", "Fine."},
	{RuleTrailingQuote, "Fine.\n\n   > ok?\n", "Fine."},
	{RuleHeaderBlock, "Fine.\n\nFrom: Jane <jane@example.com>\nSent: Tuesday\nTo: Bob\nSubject: ok\n\nok?\n", "Fine."},
	{RuleSeparator, "Fine.\n\n-----Original Message-----\nok?\n", "Fine."},
	{RuleReplyAbove, "Fine.\n\n##- Please type your reply above this line -##\nTicket\n", "Fine."},
	{RuleSignature, "Fine.\n-- \nJane\n", "Fine."},
	{RuleSignature, "Fine.\n\n--\n\n", "Fine."},
	{RuleAppSignature, "Fine.\n\nSent from my iPhone\n", "Fine."},
	{RuleAppSignature, "Fine.\n\niPhoneから送信\n", "Fine."},
	{RuleAfterAppSignature, "Fine.\n\nSent from my iPhone\n\nSupport said something\nold text\n", "Fine."},
	{RuleForward, "See this.\n\n---------- Forwarded message ---------\nFrom: Shop <shop@example.com>\nDate: Tue, 3 Mar 2026\nSubject: Order\nTo: <jane@example.com>\n\nShipped.\n",
		"See this.\n\nForwarded: from Shop <shop@example.com>, Tue, 3 Mar 2026, Order\n\nShipped."},
	{RuleForward, "Begin forwarded message:\n\nFrom: Shop <shop@example.com>\nSubject: Order\n\nShipped.\n", "Forwarded: from Shop <shop@example.com>, Order\n\nShipped."},
	{RuleForward, "Is this real?\n\nBegin forwarded message:\n\n>\n> From: Bank <service@bank.example>\n> Subject: Verify\n>\n> Please verify.\n>",
		"Is this real?\n\nForwarded: from Bank <service@bank.example>, Verify\n\nPlease verify."},
	{RuleForward, "-------- Пересылаемое сообщение --------\n03.03.2026, 10:15, \"Shop\" <shop@example.com>:\n\nSent.\n\n-------- Конец пересылаемого сообщения --------\n",
		"Forwarded: 03.03.2026, 10:15, \"Shop\" <shop@example.com>\n\nSent."},
	{RuleQuoteOnly, "> ok?\n", QuoteOnlyNote + "\n\n> ok?"},
}

func TestRules(t *testing.T) {
	tested := map[string]bool{RuleHTMLQuote: true} // reported by callers of HTMLToTextTrimmed
	for _, tc := range ruleCases {
		tested[tc.rule] = true
		got := Trim(tc.in)
		if got.Text != tc.want {
			t.Errorf("%s: Trim(%q).Text = %q, want %q", tc.rule, tc.in, got.Text, tc.want)
		}
		found := false
		for _, c := range got.Cuts {
			found = found || c.Rule == tc.rule
		}
		if !found {
			t.Errorf("%s: Trim(%q).Cuts = %+v lacks the rule", tc.rule, tc.in, got.Cuts)
		}
	}
	for _, r := range []string{RuleAttribution, RuleTrailingQuote, RuleHeaderBlock, RuleSeparator, RuleReplyAbove,
		RuleSignature, RuleAppSignature, RuleAfterAppSignature, RuleForward, RuleQuoteOnly, RuleHTMLQuote} {
		if !tested[r] {
			t.Errorf("rule %s has no case", r)
		}
	}
}

// Quotes that text follows are the context of inline answers and stay; a
// signature after a quote does not make it context.
func TestQuoteContext(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"> a?\nyes\n> b?\nno\n> c?\n", "> a?\nyes\n> b?\nno"},
		{"Hi\n\n> a?\n\nyes\n\n> old\n\n-- \nJane\n", "Hi\n\n> a?\n\nyes"},
		{"Hi\n> a?\n\nSent from my iPhone\n", "Hi"},
	} {
		if got := Trim(tc.in).Text; got != tc.want {
			t.Errorf("Trim(%q).Text = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCutDescribesWhatWasRemoved(t *testing.T) {
	got := Trim("Fine.\n\nOn Tue, 3 Mar 2026 at 10:15, Jane <jane@example.com> wrote:\n\n> ok?\n> " + strings.Repeat("x", 200) + "\n")
	if len(got.Cuts) != 2 {
		t.Fatalf("Cuts = %+v, want an attribution and a trailing quote", got.Cuts)
	}
	if c := got.Cuts[0]; c.Rule != RuleAttribution || c.Lines != 1 || !strings.HasPrefix(c.First, "On Tue") {
		t.Errorf("first cut %+v", c)
	}
	if c := got.Cuts[1]; c.Rule != RuleTrailingQuote || c.Lines != 2 || c.First != "> ok?" {
		t.Errorf("second cut %+v", c)
	}
	if long := newCut(RuleTrailingQuote, []string{strings.Repeat("é", 300)}); len([]rune(long.First)) != 100 {
		t.Errorf("First of a long line has %d runes", len([]rune(long.First)))
	}
}

func TestInvisibleLines(t *testing.T) {
	for _, s := range []string{"", "\u200b", "\ufeff\u200d", "ᐧ", " \u2060 "} {
		if !isInvisibleLine(s) {
			t.Errorf("isInvisibleLine(%q) = false", s)
		}
	}
	for _, s := range []string{"a", "ᐧa", "-"} {
		if isInvisibleLine(s) {
			t.Errorf("isInvisibleLine(%q) = true", s)
		}
	}
}

func TestQuoteMarkers(t *testing.T) {
	for s, want := range map[string]bool{
		">": true, "> a": true, "| a": true, "|": true, "> | a": true,
		"| a | b |": false, "| Name | Age": false, "a > b": false, "| | a": true, "||": true,
	} {
		if got := isQuoteMarked(s); got != want {
			t.Errorf("isQuoteMarked(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestForwardSeparators(t *testing.T) {
	for _, s := range []string{
		"---------- Forwarded message ---------", "Begin forwarded message:", "-------- Original Message --------",
		"-------- Forwarded Message --------", "---------- Weitergeleitete Nachricht ----------",
		"Anfang der weitergeleiteten Nachricht:", "---------- 转发的邮件 ---------", "-------- Пересылаемое сообщение --------",
		"Début du message réexpédié :",
	} {
		if !isForwardSeparator(s) {
			t.Errorf("isForwardSeparator(%q) = false", s)
		}
	}
	for _, s := range []string{"-----Original Message-----", "------ Original Message ------", "Forwarded to the team"} {
		if isForwardSeparator(s) {
			t.Errorf("isForwardSeparator(%q) = true", s)
		}
	}
}

func TestIsForwardSubject(t *testing.T) {
	for s, want := range map[string]bool{
		"Fwd: Order": true, "FW: Invoice": true, "WG: Rechnung": true, "TR : Facture": true, "RV: Factura": true,
		"I: Fattura": true, "Doorst: Factuur": true, "ENC: Fatura": true, "VB: Faktura": true, "PD: Faktura": true,
		"Пересл: Счёт": true, "转发：发票": true, "転送: 請求書": true,
		"Re: Order": false, "Fwd without colon": false, "Tracking: 1Z": false, "Info: x": false,
	} {
		if got := IsForwardSubject(s); got != want {
			t.Errorf("IsForwardSubject(%q) = %v, want %v", s, got, want)
		}
	}
}

// Attribution lines that do not end in "wrote:", in the languages clients
// localise them to: a name and address followed by the verb, or no verb.
func TestAttributionsWithoutWrote(t *testing.T) {
	for _, attr := range []string{
		"Jane <jane@example.com> schrieb:",
		"Jane <jane@example.com> a écrit :",
		"Jane <jane@example.com> escribió:",
		"Jane <jane@example.com> ha scritto:",
		"Jane <jane@example.com> schreef:",
		"Jane <jane@example.com> escreveu:",
		"Jane <jane@example.com> skrev:",
		"Jane <jane@example.com> napisał(a):",
		"Jane <jane@example.com> пишет:",
		"Jane <jane@example.com> 写道：",
		"2026/03/03 10:15、Jane <jane@example.com>のメール:",
		"2013/7/20 Jane <jane@example.com>",
		"03.03.2026, 10:15, \"Jane\" <jane@example.com>:",
		"Вторник, 3 марта 2026, 10:15 +03:00 от Jane <jane@example.com>:",
	} {
		in := "Answer.\n\n" + attr + "\n> Question?\n"
		got := Trim(in)
		if got.Text != "Answer." || len(got.Cuts) == 0 || got.Cuts[0].Rule != RuleAttribution {
			t.Errorf("Trim(%q) = %q, cuts %+v", in, got.Text, got.Cuts)
		}
	}
}
