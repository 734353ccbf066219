package metrics

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestReasonLabel(t *testing.T) {
	tests := []struct{ in, want string }{
		{"auto_reply", "auto_reply"},
		{"bounce", "bounce"},
		{"dsn_5xx", "dsn_5xx"},
		{"", OtherLabel},
		{"Auto_Reply", OtherLabel},
		{"auto reply", OtherLabel},
		{"auto-reply", OtherLabel},
		{strings.Repeat("a", maxReasonLen), strings.Repeat("a", maxReasonLen)},
		{strings.Repeat("a", maxReasonLen+1), OtherLabel},
		{"r\u00e9ponse", OtherLabel},
	}
	for _, tt := range tests {
		if got := reasonLabel(tt.in); got != tt.want {
			t.Errorf("reasonLabel(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzLabels checks that no channel name or skip reason makes the
// collectors panic or the registry fail to gather, and that reasons stay
// within the bounded set.
func FuzzLabels(f *testing.F) {
	f.Add("support", "auto_reply")
	f.Add("", "")
	f.Add("sup\xffport", "Bounce!")
	f.Add("billing\x00", strings.Repeat("z", 40))
	f.Fuzz(func(t *testing.T, channel, reason string) {
		got := reasonLabel(reason)
		if got != reason && got != OtherLabel {
			t.Fatalf("reasonLabel(%q) = %q", reason, got)
		}
		if len(got) > maxReasonLen || strings.Trim(got, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Fatalf("reasonLabel(%q) = %q: not a short snake_case word", reason, got)
		}
		if !utf8.ValidString(channelLabel(channel)) {
			t.Fatalf("channelLabel(%q) is not valid UTF-8", channel)
		}
		m := New()
		m.InitChannel(channel)
		m.SkipReason(channel, reason)
		m.Inbound(channel, reason)
		m.Outbound(channel, reason)
		m.SetStateFunc(func() []ChannelState { return []ChannelState{{Channel: channel}, {Channel: reason}} })
		if _, err := m.Registry().Gather(); err != nil {
			t.Fatalf("Gather with channel %q, reason %q: %v", channel, reason, err)
		}
	})
}
