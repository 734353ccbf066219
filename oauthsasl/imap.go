package oauthsasl

import (
	"fmt"

	"github.com/emersion/go-imap/v2/imapclient"
)

// AuthenticateIMAP logs c in with cred's access token, using the best OAuth2
// mechanism in the server's AUTH= capabilities (RFC 9051 section 6.2.2).
// Errors name the user and mechanism, never the token.
func AuthenticateIMAP(c *imapclient.Client, cred Credentials) error {
	sc, err := Choose(c.Caps().AuthMechanisms(), cred)
	if err != nil {
		return fmt.Errorf("imap: authenticate %q: %w", cred.Username, err)
	}
	mech, _, _ := sc.Start()
	if err := c.Authenticate(sc); err != nil {
		return fmt.Errorf("imap: authenticate %q with %s: %w", cred.Username, mech, err)
	}
	return nil
}
