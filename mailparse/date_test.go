package mailparse

import (
	netmail "net/mail"
	"testing"
)

// sameDate fails t unless parseDate(v) returns what net/mail.ParseDate
// (mail.Header.Date) returns: the same instant in the same zone, or the
// same error.
func sameDate(t *testing.T, v string) {
	t.Helper()
	got, gotErr := parseDate(v)
	want, wantErr := netmail.ParseDate(v)
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		t.Fatalf("parseDate(%q): error %v, net/mail says %v", v, gotErr, wantErr)
	}
	if !got.Equal(want) || got.String() != want.String() {
		t.Fatalf("parseDate(%q) = %v, net/mail says %v", v, got, want)
	}
}

func TestParseDate(t *testing.T) {
	for _, tc := range []struct {
		v        string
		shortcut bool // commonDateForm takes it
	}{
		{"Fri, 04 Dec 2026 14:00:00 +0000", true},
		{"Tue, 3 Mar 2026 10:15:00 +0100", true},
		{"tue, 3 Mar 2026 10:15:00 -0330", true},
		{"Mon, 2 Jan 2006 15:04:05 -0700", true},
		{"Tue, 3 Mar 2026 10:15:00 +0100 (CET)", false},
		{"Tue, 3 Mar 2026 10:15 +0100", false}, // too short for the layout
		{"Tue, 3 Mar 26 10:15:00 +0100", true}, // two-digit year: a later layout
		{"3 Mar 2026 10:15:00 +0100", false},
		{" Tue, 3 Mar 2026 10:15:00 +0100", false},
		{"Tue, 3 Mar 2026 10:15:00 GMT", false},
		{"Thu, 20 Nov 1997 09:55:06 MDT", false},
		{"Tue, 3 Mar 2026 10:15:00 +0100\r\n", false},
		{"Tue, 3 Mar 2026\r\n 10:15:00 +0100", false},
		{"Tue, 3-Mar 2026 10:15:00 +0100", false},
		{"Tue, 31 Feb 2026 10:15:00 +0100", true},
		{"Tue, 3 Mar 2026 25:15:00 +0100", true},
		{"Tuesday, 3 Mar 2026 10:15:00 +0100", true},
		{"not a date", false},
		{"Xyz, 3 Mar 2026 10:15:00 +9999", true},
	} {
		if got := commonDateForm(tc.v); got != tc.shortcut {
			t.Errorf("commonDateForm(%q) = %v, want %v", tc.v, got, tc.shortcut)
		}
		sameDate(t, tc.v)
	}
}

// FuzzParseDate: parseDate agrees with net/mail.ParseDate on any field.
func FuzzParseDate(f *testing.F) {
	for _, v := range []string{
		"Fri, 04 Dec 2026 14:00:00 +0000", "Tue, 3 Mar 2026 10:15 -0100", "Thu, 20 Nov 1997 09:55:06 MDT",
		"Tue, 3 Mar 2026 10:15:00 +0100 (CET)", "3 Mar 2026 10:15:00 +0100", "Mon, 2 Jan 06 15:04:05 -0700",
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) { sameDate(t, v) })
}
