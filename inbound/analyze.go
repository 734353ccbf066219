// Package inbound turns customer emails into Userlike messages: the
// Analyzer decides about one email (parse, classify, verify, trim, extract
// media) and the Pipeline records its decision in the inbound ledger and
// posts it to the channel's Inbound URL.
//
// The wire format of the Userlike Custom Channel lives in package userlike;
// the MIME parsing in mailparse; the reply trimmer in mailtext; the
// auto-reply/bounce/list rules in classify; sender verification in verify.
// This package composes them and owns the ledger's state transitions.
package inbound

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"mailgate/classify"
	"mailgate/mailaddr"
	"mailgate/mailparse"
	"mailgate/mailtext"
	"mailgate/verify"
)

// Action is what mailgate does with one inbound email.
type Action string

// The actions of a Decision.
const (
	ActionPost       Action = "post"
	ActionSkip       Action = "skip"
	ActionQuarantine Action = "quarantine"
	ActionDead       Action = "dead"
)

// Contact is the Userlike contact an email is posted under.
type Contact struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// AttachmentInfo describes one attachment and what happens to it.
type AttachmentInfo struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Size   int64  `json:"size"`
	Inline bool   `json:"inline,omitempty"`
	// Action is "post" or "leave out".
	Action string `json:"action"`
	// Reason says why an attachment is left out.
	Reason string `json:"reason,omitempty"`
	// MediaID is the media library id of a stored attachment.
	MediaID string `json:"-"`
	SHA256  string `json:"sha256,omitempty"`
}

// Decision is everything mailgate decides about one email. `mailgate
// inspect` prints it as JSON.
type Decision struct {
	Action         Action           `json:"action"`
	Reason         string           `json:"reason"`
	Contact        Contact          `json:"contact"`
	Subject        string           `json:"subject"`
	MessageID      string           `json:"message_id,omitempty"`
	Text           string           `json:"text"`
	FullText       string           `json:"full_text"`
	Trimmed        bool             `json:"trimmed"`
	TrimmedBy      []mailtext.Cut   `json:"trimmed_by,omitempty"`
	NewThread      bool             `json:"new_thread"`
	Classification classify.Result  `json:"classification"`
	Verification   verify.Verdict   `json:"verification"`
	Attachments    []AttachmentInfo `json:"attachments"`
	// Cc are the addresses replies copy (smtp.reply_cc = "thread"): the
	// email's Cc without mailgate's own addresses and the contact.
	Cc       []string `json:"cc,omitempty"`
	Problems []string `json:"problems,omitempty"`
	// ViaForm is the verified form sender (verify.form_senders) of a
	// contact-form email, whose contact is the Reply-To address that a
	// visitor typed and nobody verified.
	ViaForm string `json:"via_form,omitempty"`

	// NewText is the trimmed text without the subject line.
	NewText string `json:"-"`
	// DedupeKey identifies the email across folders and UIDVALIDITY
	// changes.
	DedupeKey string `json:"-"`
	// References are the Message-IDs the email replies to (In-Reply-To
	// first, then References).
	References []string `json:"-"`
	// CharsetFallbacks counts parts decoded with a guessed charset.
	CharsetFallbacks int `json:"-"`
	// Report is the delivery report of a bounce, if it carried one.
	Report *mailparse.Report `json:"-"`
	// Bounce, for a bounce with a delivery report, says whether the report
	// may be matched to a reply ("trusted: ...") or not ("untrusted: ...").
	Bounce string `json:"bounce,omitempty"`
	// CcChanged says that the email continues a conversation whose CC list
	// was different: the text states the new list, as a new conversation's
	// does (see SetThread).
	CcChanged bool `json:"-"`
	// RateLimitReached says that this email is the first one of its sender
	// skipped by the rate limit within the window: the one worth a warning.
	RateLimitReached bool `json:"-"`
	// KeepCc says that the email does not change the CC list of the
	// contact's thread: its sender is not verified.
	KeepCc bool `json:"-"`
}

// BounceTrusted reports whether the email is a bounce whose delivery report
// may mark a reply failed.
func (d *Decision) BounceTrusted() bool {
	return d.Report != nil && d.Classification.Class == classify.ClassBounce && strings.HasPrefix(d.Bounce, "trusted:")
}

// judgeBounce sets d.Bounce. Anyone can send a message that looks like a
// delivery status notification (RFC 3464) and quotes one of our Message-IDs,
// so a report is trusted only when
//
//   - the mailbox provider delivered it with a null reverse-path: the topmost
//     Return-Path (added at final delivery, RFC 5321 section 4.4) is "<>",
//     as RFC 5321 section 4.5.5 requires of every notification; or
//   - its From is verified (DMARC, DKIM or the allow list) in one of the
//     relay's own domains, for relays that report by ordinary mail.
//
// Even a trusted report never has its text posted: the notice is a fixed
// sentence and the status code (Outbound.HandleBounce).
func (d *Decision) judgeBounce(returnPath string, domains []string) {
	if d.Report == nil || d.Classification.Class != classify.ClassBounce {
		return
	}
	if strings.TrimSpace(returnPath) == "<>" {
		d.Bounce = "trusted: delivered with a null sender (Return-Path: <>)"
		return
	}
	if d.Verification.Passed() {
		_, dom, _ := strings.Cut(d.Verification.From, "@")
		for _, bd := range domains {
			bd = strings.TrimSuffix(mailaddr.Key(bd), ".")
			if bd != "" && (dom == bd || strings.HasSuffix(dom, "."+bd)) {
				d.Bounce = "trusted: sender verified in the relay's domain " + bd
				return
			}
		}
	}
	d.Bounce = "untrusted: neither a null sender nor a verified sender in the relay's domains; not matched to a reply"
}

// AnalyzerOptions configures an Analyzer.
type AnalyzerOptions struct {
	// Verifier checks the sender. It must not be nil.
	Verifier *verify.Verifier
	// Parse limits attachments and holds the sink that stores them; a nil
	// Parse.Sink measures attachments without keeping them.
	Parse mailparse.Options
	// PostMailingLists posts mail from mailing lists instead of skipping it.
	PostMailingLists bool
	// SubjectLine puts the subject as the first line of the text of the
	// first message of a new conversation.
	SubjectLine bool
	// IsOwnMessageID recognises Message-IDs that mailgate made.
	IsOwnMessageID func(id string) bool
	// ReplyCc keeps the Cc addresses of an email whose sender is verified
	// for the replies (smtp.reply_cc = "thread"); the posted text then
	// says who they are.
	ReplyCc bool
	// OwnAddresses are mailgate's own addresses (the mailbox, smtp.from,
	// smtp.reply_to, of every channel): never copied on a reply.
	OwnAddresses []string
	// BounceDomains are the relay's own domains (the domain of smtp.from
	// and the relay's host name): a bounce whose sender is verified in one
	// of them (or below it) may fail a reply. See Decision.Bounce.
	BounceDomains []string
	// FormSenders are the From addresses of the company's own web forms,
	// lower-cased. A verified email from one of them is posted under its
	// Reply-To address, flagged as not verified. See Decision.ViaForm.
	FormSenders []string
}

// Analyzer turns raw emails into Decisions. It keeps no state; the only I/O
// it does is DNS through the verifier and writes through the parse sink.
type Analyzer struct {
	opts AnalyzerOptions
}

// NewAnalyzer returns an Analyzer.
func NewAnalyzer(opts AnalyzerOptions) (*Analyzer, error) {
	if opts.Verifier == nil {
		return nil, fmt.Errorf("inbound: analyzer needs a verifier")
	}
	return &Analyzer{opts: opts}, nil
}

// Analyze decides what to do with raw. The email is taken to start a new
// conversation when it replies to nothing; callers that know the thread
// history call SetThread afterwards.
func (a *Analyzer) Analyze(ctx context.Context, raw []byte) *Decision {
	d := &Decision{Attachments: []AttachmentInfo{}}
	email, err := mailparse.Parse(ctx, bytes.NewReader(raw), a.opts.Parse)
	if err != nil {
		d.Action = ActionDead
		d.Reason = "unparseable email: " + err.Error()
		d.DedupeKey = "raw:" + hashHex(raw)
		return d
	}
	d.Problems = email.Problems
	d.Report = email.Report
	d.CharsetFallbacks = email.CharsetFallbacks
	d.Subject = email.Subject
	d.MessageID = email.MessageID
	d.References = append(append([]string(nil), email.InReplyTo...), email.References...)

	d.Verification = a.opts.Verifier.Verify(ctx, raw)
	d.Contact = Contact{Email: d.Verification.From, Name: d.Verification.FromName}
	if d.Contact.Name == "" && len(email.From) == 1 {
		d.Contact.Name = email.From[0].Name
	}
	d.Contact.Name = cleanName(d.Contact.Name, d.Contact.Email)

	var from string
	if len(email.From) == 1 {
		from = mailaddr.Key(email.From[0].Address)
	}
	d.Classification = classify.Classify(classify.Input{
		Header:      &email.Header,
		Subject:     email.Subject,
		From:        from,
		ReturnPath:  email.Header.Get("Return-Path"),
		ContentType: mediaType(email.Header.Get("Content-Type")),
	}, classify.Options{IsOwnMessageID: a.opts.IsOwnMessageID, OwnHeader: classify.OwnHeader})

	d.FullText, d.NewText, d.Trimmed, d.TrimmedBy = bodyText(email)
	for _, att := range email.Attachments {
		info := AttachmentInfo{Name: att.Filename, Type: att.ContentType, Size: att.Size, Inline: att.Inline, MediaID: att.Ref, SHA256: att.SHA256, Action: "post"}
		if att.Skipped != "" {
			info.Action = "leave out"
			info.Reason = att.Skipped
			d.NewText = appendLine(d.NewText, fmt.Sprintf("[mailgate] The attachment %q was left out: %s. The email stays in the mailbox.", att.Filename, att.Skipped))
		}
		d.Attachments = append(d.Attachments, info)
	}
	d.DedupeKey = dedupeKey(email, d.FullText)
	switch {
	case !a.opts.ReplyCc:
	case !d.Verification.Passed():
		// Only a sender verified to own the From address changes who
		// gets the contact's replies: a forged email (verify.require =
		// "none") must not copy the operator's next answer to a stranger,
		// nor drop the colleagues the contact copied.
		d.KeepCc = true
		if len(email.Cc) > 0 {
			d.Problems = append(d.Problems, "the Cc addresses are not copied on replies: the sender is not verified")
		}
	default:
		var dropped int
		d.Cc, dropped = mailaddr.Copies(email.Cc, append([]string{d.Contact.Email}, a.opts.OwnAddresses...), MaxCc)
		if dropped > 0 {
			d.Problems = append(d.Problems, fmt.Sprintf("%d Cc addresses over the limit of %d are not copied on replies", dropped, MaxCc))
		}
	}
	d.decide(a.opts.PostMailingLists)
	d.contactForm(email.ReplyTo, a.opts.FormSenders)
	d.judgeBounce(email.Header.Get("Return-Path"), a.opts.BounceDomains)
	d.SetThread(len(d.References) == 0, a.opts.SubjectLine)
	return d
}

// MaxCc is the most Cc addresses of one email that replies copy; the rest
// are left out (and the email's problems say so), so that one email cannot
// turn a reply into a mass mailing.
const MaxCc = 10

// ccLine is the line that tells the operator who replies are copied to.
func ccLine(cc []string) string {
	if len(cc) == 0 {
		return "CC: none (replies go to the contact only)"
	}
	return "CC: " + strings.Join(cc, ", ")
}

// SetThread records whether the email starts a new conversation and
// recomputes the posted text: the subject goes first on a new conversation
// when subjectLine is set, and the CC list that replies copy is stated on
// a new conversation that has one and whenever CcChanged.
func (d *Decision) SetThread(newThread, subjectLine bool) {
	d.NewThread = newThread
	d.Text = d.NewText
	var head []string
	if newThread && subjectLine && d.Subject != "" {
		head = append(head, "Subject: "+d.Subject)
	}
	if (newThread && len(d.Cc) > 0) || d.CcChanged {
		head = append(head, ccLine(d.Cc))
	}
	if len(head) > 0 {
		d.Text = strings.Join(head, "\n")
		if d.NewText != "" {
			d.Text += "\n\n" + d.NewText
		}
	}
	if d.Text == "" && !d.hasMedia() {
		d.Text = "[mailgate] The email had no text."
	}
	if d.ViaForm != "" {
		d.Text = strings.TrimSuffix(ViaFormLine+"\n\n"+d.Text, "\n\n")
	}
	if len(d.Text) > MaxPostText {
		cut := d.Text[:MaxPostText]
		for !utf8.ValidString(cut) {
			cut = cut[:len(cut)-1]
		}
		d.Text = cut + "\n\n[mailgate] The text was cut here: it is longer than 32 KiB. The whole email stays in the mailbox."
	}
}

// MaxPostText bounds the text of one chat message: a longer email text is
// cut, with a line saying so.
const MaxPostText = 32 << 10

func (d *Decision) hasMedia() bool {
	for _, a := range d.Attachments {
		if a.Action == "post" {
			return true
		}
	}
	return false
}

// decide sets Action and Reason from the classification and the verdict.
func (d *Decision) decide(postLists bool) {
	switch d.Classification.Class {
	case classify.ClassOwn, classify.ClassAutoReply, classify.ClassBounce:
		d.Action, d.Reason = ActionSkip, string(d.Classification.Class)+": "+d.Classification.Reason
		return
	case classify.ClassList:
		if !postLists {
			d.Action, d.Reason = ActionSkip, "mailing list: "+d.Classification.Reason
			return
		}
	}
	v := d.Verification
	switch {
	case v.Passed():
		d.Action, d.Reason = ActionPost, "sender verified: "+v.Reason
	case v.Result == "none":
		if d.Contact.Email == "" {
			d.Action, d.Reason = ActionQuarantine, "no usable From address: "+v.Reason
			return
		}
		d.Action, d.Reason = ActionPost, v.Reason
	default:
		d.Action, d.Reason = ActionQuarantine, "sender not verified: "+v.Reason
	}
}

// ViaFormLine flags the text of a contact-form email: its contact address
// was typed into a web form and is not verified.
const ViaFormLine = "[mailgate] via contact form (address not verified)"

// contactForm makes the Reply-To address the contact of a verified email
// from one of the company's own web forms. The form's From is verified; the
// visitor's address is not, so the text says so (SetThread), and a form
// email without a usable Reply-To is quarantined rather than posted under
// the form's address, which would merge every visitor into one contact.
func (d *Decision) contactForm(replyTo string, formSenders []string) {
	if d.Action != ActionPost || !d.Verification.Passed() || !slices.Contains(formSenders, d.Verification.From) {
		return
	}
	form := d.Verification.From
	visitor := mailaddr.Key(replyTo)
	local, domain, ok := strings.Cut(visitor, "@")
	switch {
	case !ok || local == "" || !strings.Contains(domain, "."):
		d.Action, d.Reason = ActionQuarantine, fmt.Sprintf("contact form %s: no usable Reply-To address (%q)", form, replyTo)
		return
	case slices.Contains(formSenders, visitor):
		d.Action, d.Reason = ActionQuarantine, fmt.Sprintf("contact form %s: the Reply-To %s is a form sender itself", form, visitor)
		return
	}
	d.ViaForm = form
	d.Contact = Contact{Email: visitor}
	// The visitor is not verified: the email does not change who gets
	// the contact's replies (see KeepCc).
	d.Cc, d.KeepCc = nil, true
	d.Reason = fmt.Sprintf("contact form %s verified (%s); contact is its Reply-To %s, not verified", form, d.Verification.Reason, visitor)
}

// bodyText returns the full text of the email, its new part and the cuts
// that made it.
func bodyText(email *mailparse.Email) (full, trimmed string, wasTrimmed bool, cuts []mailtext.Cut) {
	opts := mailtext.Options{Forwarded: mailtext.IsForwardSubject(email.Subject)}
	switch {
	case strings.TrimSpace(email.Text) != "":
		full = email.Text
		if email.TextFormat.Flowed {
			full = mailtext.DecodeFlowed(full, email.TextFormat.DelSp)
		}
	case email.HTML != "":
		text, quoteCut, err := mailtext.HTMLToTextTrimmed(email.HTML)
		if err == nil {
			all, err2 := mailtext.HTMLToText(email.HTML)
			if err2 != nil {
				all = text
			}
			if opts.Forwarded {
				// The HTML quote marks of a forward are the forwarded message.
				text, quoteCut = all, false
			}
			r := mailtext.TrimWith(text, opts)
			if strings.TrimSpace(r.Text) == "" {
				r = mailtext.TrimWith(all, opts)
			}
			if quoteCut {
				r.Cuts = append([]mailtext.Cut{{Rule: mailtext.RuleHTMLQuote}}, r.Cuts...)
			}
			return strings.TrimSpace(all), r.Text, r.Trimmed || quoteCut, r.Cuts
		}
	}
	r := mailtext.TrimWith(full, opts)
	return strings.TrimSpace(full), r.Text, r.Trimmed, r.Cuts
}

func dedupeKey(email *mailparse.Email, text string) string {
	var from string
	if len(email.From) > 0 {
		from = mailaddr.Key(email.From[0].Address)
	}
	// Two different emails can carry the same Message-ID (broken or hostile
	// senders); the sender, date and subject tell them apart, while a copy of
	// the same email delivered twice agrees on all of them.
	date := email.Header.Get("Date")
	if email.MessageID != "" {
		return "mid:" + email.MessageID + ":" + hashHexOf(from, "\x00", date, "\x00", email.Subject)[:16]
	}
	return "sum:" + hashHexOf(from, "\x00", date, "\x00", email.Subject, "\x00", text)
}

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hashHexOf is hashHex of the concatenated parts, without concatenating
// them (the text of an email without a Message-ID is one of them).
func hashHexOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		io.WriteString(h, p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func appendLine(text, line string) string {
	if text == "" {
		return line
	}
	return text + "\n\n" + line
}

func mediaType(ct string) string {
	t, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// cleanName drops a display name that is just the address again, or that
// contains an address other than the sender's: it would mislead operators.
func cleanName(name, addr string) string {
	name = strings.TrimSpace(strings.Join(strings.Fields(name), " "))
	if strings.EqualFold(strings.Trim(name, `"'<> `), addr) {
		return ""
	}
	if strings.Contains(name, "@") {
		return ""
	}
	return name
}
