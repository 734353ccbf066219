package imapsync

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestUIDsAfter(t *testing.T) {
	tests := []struct {
		name  string
		all   []imap.UID
		after uint32
		want  []imap.UID
	}{
		{"none", nil, 0, []imap.UID{}},
		{"all above", []imap.UID{3, 4, 5}, 2, []imap.UID{3, 4, 5}},
		{"N:* matched the last message below N", []imap.UID{7}, 9, []imap.UID{}},
		{"unsorted with duplicates", []imap.UID{12, 10, 11, 10}, 9, []imap.UID{10, 11, 12}},
		{"cursor equal excluded", []imap.UID{5, 6}, 5, []imap.UID{6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := uidsAfter(tt.all, tt.after); !slices.Equal(got, tt.want) {
				t.Fatalf("uidsAfter(%v, %d) = %v, want %v", tt.all, tt.after, got, tt.want)
			}
		})
	}
}
