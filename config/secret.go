package config

import (
	"fmt"
	"log/slog"
)

// redacted is what every printing or encoding path of a Secret yields.
const redacted = "[redacted]"

// Secret holds a credential (password, token, key). Printing it with fmt,
// encoding it as text or JSON, or logging it with log/slog yields
// "[redacted]"; only Reveal returns the value.
type Secret struct {
	value string
}

// NewSecret wraps s. It is meant for tests and for callers that build a
// Config by hand; Parse and Load fill secrets from the configuration file.
func NewSecret(s string) Secret { return Secret{value: s} }

// Reveal returns the secret value. Call it only where the value is used
// (an AUTH command, an HTTP header, an HMAC key), never to print it.
func (s Secret) Reveal() string { return s.value }

// IsZero reports whether the secret is empty (not configured).
func (s Secret) IsZero() bool { return s.value == "" }

// String returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString returns "[redacted]", so %#v does not reveal the value either.
func (s Secret) GoString() string { return redacted }

// Format writes "[redacted]" for every fmt verb.
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalText returns "[redacted]".
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON returns the JSON string "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// LogValue implements slog.LogValuer and returns "[redacted]".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
