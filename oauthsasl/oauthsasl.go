// Package oauthsasl provides the SASL client mechanisms that carry an OAuth2
// bearer token to an IMAP or SMTP server: XOAUTH2 (Google's and Microsoft's
// format) and OAUTHBEARER (RFC 7628), and chooses between them from the
// mechanisms a server advertises.
package oauthsasl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
)

// XOAuth2 is the name of the XOAUTH2 mechanism.
const XOAuth2 = "XOAUTH2"

// OAuthBearer is the name of the OAUTHBEARER mechanism (RFC 7628).
const OAuthBearer = sasl.OAuthBearer

// Credentials identify the mailbox and carry the access token.
type Credentials struct {
	// Username is the mailbox login (usually an email address).
	Username string
	// Token is the OAuth2 access token.
	Token string
	// Host and Port are sent in OAUTHBEARER's host and port fields
	// (RFC 7628, section 3.1) when set.
	Host string
	Port int
}

// XOAuth2Error is the JSON error challenge an XOAUTH2 server sends when it
// rejects a token.
type XOAuth2Error struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes"`
	Scope   string `json:"scope"`
}

// Error implements error. It never contains the token.
func (e *XOAuth2Error) Error() string {
	return fmt.Sprintf("xoauth2: server rejected the token (status %q)", e.Status)
}

type xoauth2Client struct {
	username, token string
	// Err records the server's error challenge, if any.
	err error
}

// NewXOAuth2Client returns a SASL client for XOAUTH2. The initial response is
// "user=<user>\x01auth=Bearer <token>\x01\x01". When the server answers with
// a JSON error challenge, the client replies with an empty response, as the
// mechanism requires, and the server then fails the exchange.
func NewXOAuth2Client(username, token string) sasl.Client {
	return &xoauth2Client{username: username, token: token}
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	ir := "user=" + c.username + "\x01auth=Bearer " + c.token + "\x01\x01"
	return XOAuth2, []byte(ir), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	var e XOAuth2Error
	if err := json.Unmarshal(challenge, &e); err != nil {
		return nil, fmt.Errorf("xoauth2: unexpected server challenge (%d bytes, not JSON)", len(challenge))
	}
	c.err = &e
	// An empty response asks the server to end the exchange with a failure.
	return []byte{}, nil
}

// ErrNoMechanism is returned by Choose when the server offers neither
// OAUTHBEARER nor XOAUTH2.
var ErrNoMechanism = errors.New("oauthsasl: server offers neither OAUTHBEARER nor XOAUTH2")

// Choose returns a SASL client for the best OAuth2 mechanism among those the
// server advertises (mechanism names, case-insensitive): OAUTHBEARER first,
// as the standard one, then XOAUTH2.
func Choose(advertised []string, cred Credentials) (sasl.Client, error) {
	has := func(name string) bool {
		for _, m := range advertised {
			if strings.EqualFold(strings.TrimSpace(m), name) {
				return true
			}
		}
		return false
	}
	switch {
	case has(OAuthBearer):
		return &oauthBearerClient{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
			Username: cred.Username,
			Token:    cred.Token,
			Host:     cred.Host,
			Port:     cred.Port,
		})}, nil
	case has(XOAuth2):
		return NewXOAuth2Client(cred.Username, cred.Token), nil
	}
	return nil, fmt.Errorf("%w (advertised: %s)", ErrNoMechanism, strings.Join(advertised, " "))
}

// oauthBearerClient is go-sasl's OAUTHBEARER client, answering an error
// challenge with the dummy response %x01 as RFC 7628 section 3.2.3 requires
// (go-sasl aborts instead), so the server ends the exchange cleanly.
type oauthBearerClient struct {
	sasl.Client
	err error // the server's error challenge, if any
}

func (c *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	_, err := c.Client.Next(challenge)
	var be *sasl.OAuthBearerError
	if !errors.As(err, &be) {
		return nil, fmt.Errorf("oauthbearer: unexpected server challenge (%d bytes, not JSON)", len(challenge))
	}
	c.err = be
	return []byte{0x01}, nil
}
