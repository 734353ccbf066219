package userliketest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"mailgate/userlike"
)

func post(t *testing.T, url, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(userlike.TokenHeader, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestInbound(t *testing.T) {
	in := NewInbound("tok")
	srv := httptest.NewServer(in)
	defer srv.Close()

	if got := post(t, srv.URL, "wrong", `{"email":"a@x.test","text":"hi"}`); got != http.StatusUnauthorized || in.BadTokens() != 1 {
		t.Errorf("wrong token: %d, bad tokens %d", got, in.BadTokens())
	}
	if got := post(t, srv.URL, "tok", `not json`); got != http.StatusBadRequest {
		t.Errorf("bad json: %d", got)
	}
	in.SetRespond(func(m userlike.InboundMessage, attempt int) int {
		if m.Text == "flaky" && attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	for _, want := range []int{http.StatusServiceUnavailable, http.StatusOK} {
		if got := post(t, srv.URL, "tok", `{"email":"a@x.test","text":"flaky"}`); got != want {
			t.Errorf("flaky: %d, want %d", got, want)
		}
	}
	in.SetMode(ModeUnavailable)
	if got := post(t, srv.URL, "tok", `{"email":"b@x.test","text":"down"}`); got != http.StatusServiceUnavailable {
		t.Errorf("unavailable: %d", got)
	}

	// A held POST is answered 200 once the mode changes.
	in.SetMode(ModeHold)
	done := make(chan int, 1)
	go func() { done <- post(t, srv.URL, "tok", `{"email":"c@x.test","text":"held"}`) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(in.Posts()) < 4 {
		select {
		case <-ctx.Done():
			t.Fatal("the held POST never arrived")
		case <-time.After(time.Millisecond):
		}
	}
	in.SetMode(ModeOK)
	if got := <-done; got != http.StatusOK {
		t.Errorf("held: %d", got)
	}
	posts, ok := in.Wait(ctx, func(p []Post) bool { return len(p) == 2 })
	if !ok || posts[0].Message.Text != "flaky" || posts[1].Message.Email != "c@x.test" {
		t.Errorf("accepted %+v", posts)
	}
	if n, _ := in.WaitCount(ctx, 2); n != 2 {
		t.Errorf("WaitCount = %d", n)
	}

	in.Reset()
	in.Lean()
	var seen Post
	in.OnAccept = func(p Post) { seen = p }
	const leanBody = `{"email":"d@x.test","text":"lean","url":"https://gw.test/m"}`
	post(t, srv.URL, "tok", leanBody)
	if got := in.Accepted(); len(got) != 1 || got[0].Message.Text != "" || got[0].Message.Email != "d@x.test" ||
		string(seen.Body) != leanBody || seen.Message.URL != "https://gw.test/m" || seen.Message.Text != "" {
		t.Errorf("lean: %+v, OnAccept saw %+v", got, seen)
	}
	// Lean still checks the JSON whole.
	if code := post(t, srv.URL, "tok", `{"email":"d@x.test","text":"lean"`); code != http.StatusBadRequest {
		t.Errorf("lean, truncated JSON: %d, want 400", code)
	}
}
