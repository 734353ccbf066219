// Package bridge is the thin wiring between the configuration and the
// parts that do the work: it builds one channel's verifier and analyzer,
// inbound pipeline and IMAP watcher, outbound channel (SMTP sender, Sent
// folder) and OAuth2 token source from its [[channel]] table. It is the one
// place where configuration values become behaviour: the daemon (run,
// reload, demo), inspect and check-config all build their parts here, so
// they cannot drift apart.
package bridge

import (
	"fmt"
	"net"
	"net/mail"
	"strings"

	"mailgate/config"
	"mailgate/inbound"
	"mailgate/mailparse"
	"mailgate/verify"
)

// AnalyzerDeps are what a channel's analyzer needs beyond its
// configuration.
type AnalyzerDeps struct {
	// Resolver answers the verifier's DNS queries.
	Resolver verify.Resolver
	// Sink stores attachments; nil measures them without keeping them
	// (inspect).
	Sink mailparse.AttachmentSink
	// IsOwnMessageID recognises mailgate's Message-IDs; nil recognises
	// none (inspect has no installation key).
	IsOwnMessageID func(string) bool
}

// NewAnalyzer builds the verifier and analyzer of channel ch from the
// configuration. The daemon (through Build) and inspect both call it, so
// inspect decides exactly as the daemon does.
func NewAnalyzer(cfg *config.Config, ch *config.Channel, deps AnalyzerDeps) (*inbound.Analyzer, error) {
	v, err := verify.New(verify.Options{
		TrustedAuthservIDs: ch.Verify.TrustedAuthservIDs,
		Require:            string(ch.Verify.Require),
		Allow:              ch.Verify.Allow,
		SelfDKIM:           ch.Verify.DKIM,
		StrictAlignment:    ch.Verify.StrictAlignment,
		Resolver:           deps.Resolver,
	})
	if err != nil {
		return nil, fmt.Errorf("channel %q: %w", ch.Name, err)
	}
	return inbound.NewAnalyzer(inbound.AnalyzerOptions{
		Verifier: v,
		Parse: mailparse.Options{
			MaxAttachmentSize: int64(cfg.Media.MaxSize),
			MaxAttachments:    cfg.Media.MaxCount,
			Sink:              deps.Sink,
		},
		PostMailingLists: ch.Inbound.MailingLists == config.MailingListsPost,
		SubjectLine:      ch.Inbound.Subject == config.SubjectFirstLine,
		IsOwnMessageID:   deps.IsOwnMessageID,
		BounceDomains:    relayDomains(ch),
		FormSenders:      ch.Verify.FormSenders,
		ReplyCc:          ch.SMTP.ReplyCc == config.ReplyCcThread,
		OwnAddresses:     OwnAddresses(cfg),
	})
}

// OwnAddresses are the addresses of every channel's mailbox that a reply
// must never be copied to: the IMAP and SMTP user names when they are
// addresses, smtp.from and smtp.reply_to. A copy there would only come
// back into a watched mailbox.
func OwnAddresses(cfg *config.Config) []string {
	var out []string
	for _, ch := range cfg.Channels {
		for _, a := range []string{ch.IMAP.Username, ch.SMTP.Username, ch.SMTP.From.Address} {
			if strings.Contains(a, "@") {
				out = append(out, a)
			}
		}
		if rt, err := mail.ParseAddress(ch.SMTP.ReplyTo); err == nil {
			out = append(out, rt.Address)
		}
	}
	return out
}

// relayDomains are the channel's own sending domains: the domain of
// smtp.from and the relay's host name. A bounce verified in one of them
// may fail a reply.
func relayDomains(ch *config.Channel) []string {
	var ds []string
	if _, d, ok := strings.Cut(ch.SMTP.From.Address, "@"); ok && d != "" {
		ds = append(ds, d)
	}
	if host, _, err := net.SplitHostPort(ch.SMTP.Address); err == nil && strings.Contains(host, ".") && net.ParseIP(host) == nil {
		ds = append(ds, host)
	}
	return ds
}
