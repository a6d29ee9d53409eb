package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

// The last admin who can act is neither demoted nor suspended through the
// API: nobody could take an admin action afterwards, not even undo it,
// until someone with the admin credential ran `salamander admin
// set-role`. With another admin, either is taken.
func TestTheLastAdminIsNeitherDemotedNorSuspended(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	g, _, v := startLoneGateway(t, ctx, nil,
		salamander.Record{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "x"},
		salamander.Record{Type: salamander.RecUserCreated, User: "ann", PasswordHash: "x"},
		salamander.Record{Type: salamander.RecRoleSet, User: "boss", Role: salamander.RoleAdmin, Site: "cli"})
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if v.Role("boss") != salamander.RoleAdmin || v.Role("ann") != salamander.RoleUser {
			return fmt.Errorf("boss is %s, ann %s", v.Role("boss"), v.Role("ann"))
		}
		return nil
	})
	boss := claims{User: "boss"}
	setRole := func(name, role string) int {
		r := httptest.NewRequestWithContext(ctx, "POST", "/v1/ops/users/"+name+"/role", strings.NewReader(`{"role":"`+role+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.SetPathValue("name", name)
		w := httptest.NewRecorder()
		g.handleSetRole(w, r, boss)
		return w.Code
	}
	suspend := func(name string) int {
		r := httptest.NewRequestWithContext(ctx, "POST", "/v1/ops/users/"+name+"/suspend", nil)
		r.SetPathValue("name", name)
		w := httptest.NewRecorder()
		g.userAction(salamander.RecUserSuspended)(w, r, boss)
		return w.Code
	}
	if code := setRole("boss", salamander.RoleOperator); code != http.StatusConflict {
		t.Fatalf("the last admin demoted themselves: %d", code)
	}
	if code := suspend("boss"); code != http.StatusConflict {
		t.Fatalf("the last admin suspended themselves: %d", code)
	}
	if v.Role("boss") != salamander.RoleAdmin || v.Suspended("boss") {
		t.Fatal("the refused changes were made")
	}
	if code := setRole("ann", salamander.RoleAdmin); code != http.StatusOK {
		t.Fatalf("a second admin: %d", code)
	}
	if code := setRole("boss", salamander.RoleUser); code != http.StatusOK || v.Role("boss") != salamander.RoleUser {
		t.Fatalf("an admin stepping down beside another: %d, %s", code, v.Role("boss"))
	}
}
