package main

import (
	"crypto/tls"
	"net/mail"

	"mailgate/config"
	"mailgate/imapsync"
	"mailgate/metrics"
	"mailgate/oauthgrant"
	"mailgate/outbound"
	"mailgate/smtpout"
	"mailgate/userlike"
)

// outboundConfig builds what the outbox worker needs to know about a
// channel: its SMTP relay, sender identity and Sent folder.
func (d *daemon) outboundConfig(ch config.Channel, client *userlike.Client, grant *oauthgrant.Source) (outbound.Channel, error) {
	sender, err := smtpout.NewSender(senderOptions(ch, grant))
	if err != nil {
		return outbound.Channel{}, err
	}
	replyTo := ch.SMTP.ReplyTo
	if replyTo == "" {
		replyTo = (&mail.Address{Address: ch.SMTP.From.Address}).String()
	}
	out := outbound.Channel{
		Name:           ch.Name,
		From:           ch.SMTP.From,
		ReplyTo:        replyTo,
		FromTemplate:   ch.SMTP.FromTemplate,
		NewSubject:     ch.SMTP.NewSubject,
		Sender:         sender,
		Notify:         client,
		NotifyFailures: ch.SMTP.NotifyFailures,
		MaxAge:         ch.SMTP.MaxAge.Duration,
		FooterText:     ch.SMTP.FooterText,
		FooterHTML:     ch.SMTP.FooterHTML,
		Quote:          ch.SMTP.Quote,
		ReplyCc:        ch.SMTP.ReplyCc == "thread",
		OwnAddresses:   ownAddresses(d.opts.Config),
	}
	if ch.SMTP.SentFolder != "" {
		opts := imapOptions(ch, grant)
		opts.Logger = d.log
		sent, err := imapsync.NewSentFolder(opts, ch.SMTP.SentFolder)
		if err != nil {
			return outbound.Channel{}, err
		}
		out.SentFolder = sent
	}
	return out, nil
}

// senderOptions are the SMTP relay settings of a channel; grant is the
// channel's token source, nil for a channel with passwords.
func senderOptions(ch config.Channel, grant *oauthgrant.Source) smtpout.SenderOptions {
	o := smtpout.SenderOptions{
		Address:  ch.SMTP.Address,
		Security: ch.SMTP.Security,
		Username: ch.SMTP.Username,
		Password: ch.SMTP.Password.Reveal(),
	}
	if grant != nil {
		o.Tokens = grant
	}
	return o
}

// imapOptions are the IMAP connection and folder settings of a channel, as
// the watcher, the Sent folder and check-config -connect use them; grant is
// the channel's token source, nil for a channel with passwords.
func imapOptions(ch config.Channel, grant *oauthgrant.Source) imapsync.Options {
	var auth imapsync.Authenticator = imapsync.PasswordAuth{Username: ch.IMAP.Username, Password: ch.IMAP.Password.Reveal()}
	if grant != nil {
		auth = imapsync.OAuth2Auth{Username: ch.IMAP.Username, Tokens: grant}
	}
	return imapsync.Options{
		Channel:          ch.Name,
		Address:          ch.IMAP.Address,
		Security:         ch.IMAP.Security,
		TLSConfig:        imapTLS(ch),
		Auth:             auth,
		Folders:          ch.IMAP.Folders,
		QuarantineFolder: ch.IMAP.QuarantineFolder,
		MoveTo:           ch.IMAP.MoveTo,
		Start:            imapsync.Start{All: ch.IMAP.Start.All, Since: ch.IMAP.Start.Since},
	}
}

// imapTLS is the TLS configuration of a channel's IMAP connection, nil for
// the defaults.
func imapTLS(ch config.Channel) *tls.Config {
	if ch.IMAP.TLSServerName == "" && !ch.IMAP.InsecureSkipVerify {
		return nil
	}
	return &tls.Config{ServerName: ch.IMAP.TLSServerName, InsecureSkipVerify: ch.IMAP.InsecureSkipVerify}
}

// outboundChannel is the outbox worker's channel lookup.
func (d *daemon) outboundChannel(name string) (outbound.Channel, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	run, ok := d.channels[name]
	if !ok {
		return outbound.Channel{}, false
	}
	return run.out, true
}

// webhookChannel is the webhook's channel lookup. It reads the
// configuration, not the running channels: a reply for a channel that is
// restarting after a reload is queued all the same.
func (d *daemon) webhookChannel(name string) (outbound.WebhookChannel, bool) {
	d.mu.Lock()
	cfg := d.opts.Config
	d.mu.Unlock()
	ch, ok := cfg.Channel(name)
	if !ok {
		return outbound.WebhookChannel{}, false
	}
	coalesce := ch.SMTP.Coalesce.Duration
	if coalesce == 0 {
		coalesce = -1 // configured 0: send each message at once
	}
	return outbound.WebhookChannel{
		Name:          name,
		OutboundToken: ch.Userlike.OutboundToken.Reveal(),
		Debug:         ch.Userlike.Debug,
		Coalesce:      coalesce,
	}, true
}

// observeOutbound turns outbox outcomes into metrics.
func (d *daemon) observeOutbound(o outbound.Outcome) {
	switch o.Kind {
	case "sent":
		d.metrics.Outbound(o.Channel, metrics.OutboundSent)
		d.metrics.OutboundLatency(o.Channel, o.Latency)
	case "retried":
		d.metrics.Outbound(o.Channel, metrics.OutboundRetried)
	case "failed", "bounced":
		d.metrics.Outbound(o.Channel, metrics.OutboundFailed)
	}
}
