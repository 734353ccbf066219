package oauthsasl

import (
	"github.com/emersion/go-sasl"
	"github.com/wneessen/go-mail/smtp"
)

// SMTPAuth returns a go-mail smtp.Auth that authenticates with cred's access
// token, choosing OAUTHBEARER or XOAUTH2 from the mechanisms in the server's
// EHLO AUTH line. SMTP authenticates per connection, so callers build one
// per connection with a current token.
func SMTPAuth(cred Credentials) smtp.Auth {
	return &smtpAuth{cred: cred}
}

type smtpAuth struct {
	cred Credentials
	sc   sasl.Client
}

func (a *smtpAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	sc, err := Choose(server.Auth, a.cred)
	if err != nil {
		return "", nil, err
	}
	a.sc = sc
	return sc.Start()
}

func (a *smtpAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	return a.sc.Next(fromServer)
}
