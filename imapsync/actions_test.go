package imapsync

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestPlanActions(t *testing.T) {
	const v = 7
	type group struct {
		kind, dest, uids string
		ids              []int64
	}
	tests := []struct {
		name        string
		acts        []Action
		moveTo      string
		quarantine  string
		want        []group
		wantDropped []int64
	}{
		{
			name: "grouped by kind in seen, flag, move, delete order",
			acts: []Action{
				{ID: 1, UIDValidity: v, UID: 9, Kind: ActionDelete},
				{ID: 2, UIDValidity: v, UID: 3, Kind: ActionSeen},
				{ID: 3, UIDValidity: v, UID: 4, Kind: ActionSeen},
				{ID: 4, UIDValidity: v, UID: 5, Kind: ActionSeen},
				{ID: 5, UIDValidity: v, UID: 3, Kind: ActionFlag},
				{ID: 6, UIDValidity: v, UID: 8, Kind: ActionMove, Dest: "B"},
				{ID: 7, UIDValidity: v, UID: 6, Kind: ActionMove, Dest: "A"},
				{ID: 8, UIDValidity: v, UID: 7, Kind: ActionMove, Dest: "B"},
			},
			want: []group{
				{ActionSeen, "", "3:5", []int64{2, 3, 4}},
				{ActionFlag, "", "3", []int64{5}},
				{ActionMove, "B", "7:8", []int64{6, 8}},
				{ActionMove, "A", "6", []int64{7}},
				{ActionDelete, "", "9", []int64{1}},
			},
		},
		{
			name: "move defaults and quarantine",
			acts: []Action{
				{ID: 1, UIDValidity: v, UID: 1, Kind: ActionMove},
				{ID: 2, UIDValidity: v, UID: 2, Kind: ActionQuarantine},
				{ID: 3, UIDValidity: v, UID: 3, Kind: ActionMove, Dest: "Done"},
			},
			moveTo:     "Done",
			quarantine: "Junk/Held",
			want: []group{
				{ActionMove, "Done", "1,3", []int64{1, 3}},
				{ActionMove, "Junk/Held", "2", []int64{2}},
			},
		},
		{
			name: "dropped: stale, unknown, no destination, UID 0",
			acts: []Action{
				{ID: 1, UIDValidity: v + 1, UID: 1, Kind: ActionSeen},
				{ID: 2, UIDValidity: v, UID: 1, Kind: "archive"},
				{ID: 3, UIDValidity: v, UID: 1, Kind: ActionMove},
				{ID: 4, UIDValidity: v, UID: 1, Kind: ActionQuarantine},
				{ID: 5, UIDValidity: v, UID: 0, Kind: ActionSeen},
				{ID: 6, UIDValidity: v, UID: 2, Kind: ActionSeen},
			},
			want:        []group{{ActionSeen, "", "2", []int64{6}}},
			wantDropped: []int64{1, 2, 3, 4, 5},
		},
		{name: "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			groups, dropped := planActions(tt.acts, v, tt.moveTo, tt.quarantine)
			var got []group
			for _, g := range groups {
				got = append(got, group{g.kind, g.dest, g.uids.String(), g.ids})
			}
			if !slices.EqualFunc(got, tt.want, func(a, b group) bool {
				return a.kind == b.kind && a.dest == b.dest && a.uids == b.uids && slices.Equal(a.ids, b.ids)
			}) {
				t.Errorf("groups %+v, want %+v", got, tt.want)
			}
			var droppedIDs []int64
			for _, d := range dropped {
				if d.reason == "" {
					t.Errorf("action %d dropped without reason", d.ID)
				}
				droppedIDs = append(droppedIDs, d.ID)
			}
			if !slices.Equal(droppedIDs, tt.wantDropped) {
				t.Errorf("dropped %v, want %v", droppedIDs, tt.wantDropped)
			}
		})
	}
}

// FuzzPlanActions checks that every action is either grouped once or
// dropped once, and that groups only hold actions of the folder's
// UIDVALIDITY.
func FuzzPlanActions(f *testing.F) {
	f.Add(uint32(7), uint32(7), uint32(1), "seen", "", uint32(7), uint32(2), "move", "Archive")
	f.Add(uint32(7), uint32(8), uint32(1), "delete", "", uint32(7), uint32(0), "quarantine", "")
	f.Add(uint32(1), uint32(1), uint32(5), "flag", "x", uint32(1), uint32(5), "bogus", "y")
	f.Fuzz(func(t *testing.T, validity, v1, uid1 uint32, kind1, dest1 string, v2, uid2 uint32, kind2, dest2 string) {
		acts := []Action{
			{ID: 1, UIDValidity: v1, UID: uid1, Kind: kind1, Dest: dest1},
			{ID: 2, UIDValidity: v2, UID: uid2, Kind: kind2, Dest: dest2},
		}
		groups, dropped := planActions(acts, validity, "Done", "")
		seen := map[int64]int{}
		for _, g := range groups {
			if len(g.ids) == 0 || len(g.uids) == 0 {
				t.Fatalf("empty group %+v", g)
			}
			for _, id := range g.ids {
				seen[id]++
				a := acts[id-1]
				if a.UIDValidity != validity || !g.uids.Contains(imap.UID(a.UID)) {
					t.Fatalf("action %+v wrongly in group %+v", a, g)
				}
			}
		}
		for _, d := range dropped {
			seen[d.ID]++
		}
		if seen[1] != 1 || seen[2] != 1 {
			t.Fatalf("actions planned %v times, want once each", seen)
		}
	})
}
