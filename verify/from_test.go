package verify

import "testing"

func TestUnknownCharsetInDisplayName(t *testing.T) {
	id, err := parseFrom([]string{"=?x-klingon?B?cXVs?= <hostile30@example.test>"})
	if err != nil || id.addr != "hostile30@example.test" {
		t.Errorf("parseFrom = %+v, %v; want the address despite the unknown charset", id, err)
	}
}
