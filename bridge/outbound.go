package bridge

import (
	"crypto/tls"
	"log/slog"
	"net/mail"

	"mailgate/config"
	"mailgate/imapsync"
	"mailgate/oauthgrant"
	"mailgate/outbound"
	"mailgate/smtpout"
	"mailgate/userlike"
)

// NewOutbound builds what the outbox worker needs to know about channel
// ch of cfg: its SMTP relay, sender identity and Sent folder. client posts
// failure notices; grant is the channel's token source, nil for a channel
// with passwords.
func NewOutbound(cfg *config.Config, ch config.Channel, client *userlike.Client, grant *oauthgrant.Source, log *slog.Logger) (outbound.Channel, error) {
	sender, err := smtpout.NewSender(SenderOptions(ch, grant))
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
		ReplyCc:        ch.SMTP.ReplyCc == config.ReplyCcThread,
		OwnAddresses:   OwnAddresses(cfg),
	}
	if ch.SMTP.SentFolder != "" {
		opts := IMAPOptions(ch, grant)
		opts.Logger = log
		sent, err := imapsync.NewSentFolder(opts, ch.SMTP.SentFolder)
		if err != nil {
			return outbound.Channel{}, err
		}
		out.SentFolder = sent
	}
	return out, nil
}

// SenderOptions are the SMTP relay settings of a channel; grant is the
// channel's token source, nil for a channel with passwords.
func SenderOptions(ch config.Channel, grant *oauthgrant.Source) smtpout.SenderOptions {
	o := smtpout.SenderOptions{
		Address:  ch.SMTP.Address,
		Security: string(ch.SMTP.Security),
		Username: ch.SMTP.Username,
		Password: ch.SMTP.Password.Reveal(),
	}
	if grant != nil {
		o.Tokens = grant
	}
	return o
}

// IMAPOptions are the IMAP connection and folder settings of a channel, as
// the watcher, the Sent folder and check-config -connect use them; grant is
// the channel's token source, nil for a channel with passwords.
func IMAPOptions(ch config.Channel, grant *oauthgrant.Source) imapsync.Options {
	var auth imapsync.Authenticator = imapsync.PasswordAuth{Username: ch.IMAP.Username, Password: ch.IMAP.Password.Reveal()}
	if grant != nil {
		auth = imapsync.OAuth2Auth{Username: ch.IMAP.Username, Tokens: grant}
	}
	return imapsync.Options{
		Channel:          ch.Name,
		Address:          ch.IMAP.Address,
		Security:         string(ch.IMAP.Security),
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
