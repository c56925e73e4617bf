package conformance

import (
	"net/http"
	"regexp"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

var autoKeyRe = regexp.MustCompile(`^[A-Za-z0-9]{32}$`)

// TestAdminConsumers covers behaviours 18 and 19 and the key-auth
// credential endpoints (§1.7).
func TestAdminConsumers(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-consumers"})

	t.Run("X_consumer_fields", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			name := uniq("cf-" + string(enc))
			r := harness.Send(t, enc, http.MethodPost, n.Admin("/consumers"), map[string]any{"username": name})
			harness.ExpectStatus(t, r, http.StatusCreated)
			c := r.JSON(t)
			checkFields(t, "new consumer", c, map[string]any{"username": name, "custom_id": nil, "tags": nil})
			if !harness.IsUUID(c["id"]) || !isIntegral(c["created_at"]) {
				t.Errorf("consumer id/created_at: %s", r)
			}
			for _, key := range []string{idOf(c), name} {
				g := harness.Get(t, n.Admin("/consumers/"+key))
				if harness.CheckStatus(t, g, http.StatusOK) && idOf(g.JSON(t)) != idOf(c) {
					t.Errorf("GET /consumers/%s returned another consumer", key)
				}
			}
		})
	})

	t.Run("B18_duplicate_username_or_custom_id", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			user := uniq("b18-bob-" + string(enc))
			cid := uniq("b18-cid-" + string(enc))
			r := harness.Send(t, enc, http.MethodPost, n.Admin("/consumers"), map[string]any{"username": user, "custom_id": cid})
			harness.ExpectStatus(t, r, http.StatusCreated)

			r = harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/consumers"), map[string]any{"username": user})
			})
			e := harness.CheckKongError(t, r, 409, 5, "unique constraint violation", `UNIQUE violation detected on '{username="`+user+`"}'`)
			fieldEquals(t, "duplicate username", e, "fields", map[string]any{"username": user})

			r = harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/consumers"), map[string]any{"username": user + "-other", "custom_id": cid})
			})
			harness.CheckKongError(t, r, 409, 5, "unique constraint violation", `UNIQUE violation detected on '{custom_id="`+cid+`"}'`)

			// PATCHing another consumer onto a taken username also conflicts.
			other := create(t, n, "/consumers", map[string]any{"username": uniq("b18-other")})
			r = harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPatch, n.Admin("/consumers/"+idOf(other)), map[string]any{"username": user})
			})
			harness.CheckKongError(t, r, 409, 5, "unique constraint violation", "")
		})
	})

	t.Run("B19_username_or_custom_id_required_and_filter", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/consumers"), map[string]any{})
			})
			e := harness.CheckKongError(t, r, 400, 2, "schema violation", "")
			fieldEquals(t, "consumer without names", e, "fields.@entity", []string{"at least one of these fields must be non-empty: 'custom_id', 'username'"})
		})

		cid := uniq("b19-cid")
		c := create(t, n, "/consumers", map[string]any{"custom_id": cid})
		fieldEquals(t, "consumer with only custom_id", c, "username", nil)
		r := harness.Get(t, n.Admin("/consumers?custom_id="+cid))
		harness.ExpectStatus(t, r, http.StatusOK)
		m := r.JSON(t)
		if data, _ := m["data"].([]any); len(data) != 1 || !jsonEqual(data[0], c) {
			t.Errorf("?custom_id=%s: %s, want exactly the consumer %v", cid, r, c)
		}
		if nx, present := m["next"]; !present || nx != nil {
			t.Errorf("?custom_id: next = %#v, want null", nx)
		}
		r = harness.Get(t, n.Admin("/consumers?custom_id=b19-nobody"))
		harness.CheckStatus(t, r, http.StatusOK)
		harness.JSONEqual(t, r, `{"data":[],"next":null}`)

		r = harness.Get(t, n.Admin("/consumers?custom_id="))
		harness.CheckStatus(t, r, http.StatusBadRequest)
		if harness.Str(r.JSON(t), "message") != "custom_id must be an unempty string" {
			t.Errorf("empty custom_id: %s", r)
		}
	})

	t.Run("X_key_auth_credentials", func(t *testing.T) {
		user := uniq("cred-user")
		c := create(t, n, "/consumers", map[string]any{"username": user})

		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			key := uniq("cred-key-" + string(enc))
			r := harness.Send(t, enc, http.MethodPost, n.Admin("/consumers/"+user+"/key-auth"), map[string]any{"key": key, "tags": []any{"k"}})
			harness.ExpectStatus(t, r, http.StatusCreated)
			cred := r.JSON(t)
			checkFields(t, "credential", cred, map[string]any{"key": key, "consumer": map[string]any{"id": idOf(c)}, "tags": []string{"k"}})
			if !harness.IsUUID(cred["id"]) {
				t.Errorf("credential id %v", cred["id"])
			}

			// Duplicate keys are rejected, even on another consumer.
			c2 := create(t, n, "/consumers", map[string]any{"username": uniq("cred-other")})
			r = harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/consumers/"+idOf(c2)+"/key-auth"), map[string]any{"key": key})
			})
			harness.CheckKongError(t, r, 409, 5, "unique constraint violation", "")

			for _, p := range []string{"/key-auths/" + key, "/key-auths/" + idOf(cred), "/consumers/" + user + "/key-auth/" + idOf(cred)} {
				g := harness.Get(t, n.Admin(p))
				if harness.CheckStatus(t, g, http.StatusOK) && idOf(g.JSON(t)) != idOf(cred) {
					t.Errorf("GET %s returned %s", p, g)
				}
			}
			// A credential is not reachable through another consumer.
			harness.CheckStatus(t, harness.Get(t, n.Admin("/consumers/"+idOf(c2)+"/key-auth/"+idOf(cred))), http.StatusNotFound)
		})

		// No key: one is generated, 32 alphanumeric characters.
		r := harness.JSON(t, http.MethodPost, n.Admin("/consumers/"+user+"/key-auth"), map[string]any{})
		harness.ExpectStatus(t, r, http.StatusCreated)
		if k := harness.Str(r.JSON(t), "key"); !autoKeyRe.MatchString(k) {
			t.Errorf("generated key %q, want 32 characters [A-Za-z0-9]", k)
		}

		r = harness.Get(t, n.Admin("/consumers/"+user+"/key-auth"))
		harness.ExpectStatus(t, r, http.StatusOK)
		if got := len(r.Data(t)); got != 4 {
			t.Errorf("consumer has %d credentials, want 4: %s", got, r)
		}
		r = harness.Get(t, n.Admin("/key-auths"))
		harness.ExpectStatus(t, r, http.StatusOK)
		if got := len(r.Data(t)); got < 4 {
			t.Errorf("/key-auths lists %d credentials, want at least 4", got)
		}
		// Nested under a missing consumer: 404.
		harness.CheckStatus(t, harness.Get(t, n.Admin("/consumers/"+randomUUID()+"/key-auth")), http.StatusNotFound)

		// Credentials are deleted with their consumer.
		creds := listIDs(t, harness.Get(t, n.Admin("/consumers/"+user+"/key-auth")))
		r = harness.Method(t, http.MethodDelete, n.Admin("/consumers/"+user))
		harness.CheckStatus(t, r, http.StatusNoContent)
		for _, id := range creds {
			harness.CheckStatus(t, harness.Get(t, n.Admin("/key-auths/"+id)), http.StatusNotFound)
		}
	})
}
