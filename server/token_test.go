package server

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func newIssuer(t testing.TB) *HMACIssuer {
	iss, err := NewHMACIssuer(RandomKey())
	require.NoError(t, err)
	return iss
}

func TestHMACIssueVerify(t *testing.T) {
	iss := newIssuer(t)
	before := time.Now()
	tok, err := iss.Issue("alice", time.Hour)
	require.NoError(t, err)
	require.Equal(t, 2, strings.Count(tok, "."))

	header, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(header)
	require.NoError(t, err)
	require.JSONEq(t, `{"alg":"HS256","typ":"JWT"}`, string(raw))

	id, err := iss.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.Equal(t, "alice", id.Subject)
	require.WithinDuration(t, before.Add(time.Hour), id.Expiry, 2*time.Second)

	other, err := iss.Issue("alice", time.Hour)
	require.NoError(t, err)
	require.NotEqual(t, tok, other, "jti makes every token unique")
}

func TestHMACIssuerRefusals(t *testing.T) {
	iss := newIssuer(t)
	good, err := iss.Issue("alice", time.Hour)
	require.NoError(t, err)
	parts := strings.Split(good, ".")

	expired, err := iss.IssueWithExpiry("alice", time.Now().Add(-time.Minute))
	require.NoError(t, err)
	foreign, err := newIssuer(t).Issue("alice", time.Hour)
	require.NoError(t, err)

	b64 := base64.RawURLEncoding.EncodeToString
	noneHeader := b64([]byte(`{"alg":"none","typ":"JWT"}`))
	hs512Header := b64([]byte(`{"alg":"HS512","typ":"JWT"}`))
	// Re-sign a token with a swapped header using the real key: the algorithm check must
	// still refuse it, whatever the signature.
	resigned := func(header, claims string) string {
		return header + "." + claims + "." + b64(iss.sign(header+"."+claims))
	}
	sigBytes, err := base64.RawURLEncoding.DecodeString(parts[2])
	require.NoError(t, err)
	sigBytes[0] ^= 1
	forgedClaims := b64([]byte(`{"sub":"mallory","exp":9999999999}`))
	// The same signature spelled differently: a 32-byte signature leaves two bits of its
	// last character unused, and flipping one of them decodes to the same bytes unless the
	// decoding is strict.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, parts[2][len(parts[2])-1])
	respelled := parts[2][:len(parts[2])-1] + string(alphabet[last^1])

	cases := map[string]string{
		"empty":               "",
		"garbage":             "garbage",
		"two parts":           parts[0] + "." + parts[1],
		"four parts":          good + ".x",
		"dots only":           "..",
		"bad base64 header":   "!!!." + parts[1] + "." + parts[2],
		"bad base64 sig":      parts[0] + "." + parts[1] + ".!!!",
		"header not json":     b64([]byte("nope")) + "." + parts[1] + "." + parts[2],
		"tampered signature":  parts[0] + "." + parts[1] + "." + b64(sigBytes),
		"tampered claims":     parts[0] + "." + forgedClaims + "." + parts[2],
		"respelled signature": parts[0] + "." + parts[1] + "." + respelled,
		"alg none":            noneHeader + "." + parts[1] + ".",
		"alg none with sig":   noneHeader + "." + parts[1] + "." + parts[2],
		"alg none re-signed":  resigned(noneHeader, parts[1]),
		"alg HS512":           resigned(hs512Header, parts[1]),
		"expired":             expired,
		"other key":           foreign,
		"no subject":          resigned(parts[0], b64([]byte(`{"exp":9999999999}`))),
		"no expiry":           resigned(parts[0], b64([]byte(`{"sub":"alice"}`))),
		"expiry out of range": resigned(parts[0], b64([]byte(`{"sub":"alice","exp":1e300}`))),
		"negative expiry":     resigned(parts[0], b64([]byte(`{"sub":"alice","exp":-5}`))),
		"claims not json":     resigned(parts[0], b64([]byte(`[1,2`))),
		"subject not string":  resigned(parts[0], b64([]byte(`{"sub":42,"exp":9999999999}`))),
		"huge":                strings.Repeat("a", maxTokenLen+1),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			id, err := iss.Verify(context.Background(), tok)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalidToken)
			require.Equal(t, Identity{}, id)
			if tok != "" {
				require.NotContains(t, err.Error(), tok, "errors never quote the token")
			}
		})
	}
}

func TestHMACIssuerErrors(t *testing.T) {
	_, err := NewHMACIssuer(make([]byte, 15))
	require.Error(t, err)
	_, err = NewHMACIssuer(nil)
	require.Error(t, err)
	require.Len(t, RandomKey(), 32)
	require.NotEqual(t, RandomKey(), RandomKey())

	iss := newIssuer(t)
	_, err = iss.Issue("", time.Hour)
	require.Error(t, err)
	_, err = iss.Issue("alice", 0)
	require.Error(t, err)
	_, err = iss.Issue("alice", -time.Second)
	require.Error(t, err)
	_, err = iss.IssueWithExpiry("alice", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
	require.Error(t, err)
}

func TestHMACIssuerCopiesKey(t *testing.T) {
	key := RandomKey()
	iss, err := NewHMACIssuer(key)
	require.NoError(t, err)
	tok, err := iss.Issue("alice", time.Hour)
	require.NoError(t, err)
	key[0] ^= 0xff // the caller's slice is not the issuer's key
	_, err = iss.Verify(context.Background(), tok)
	require.NoError(t, err)
}

func TestSafeVerifyError(t *testing.T) {
	secret := "s3cr3t-token"
	leaky := errors.New("bad token " + secret)
	require.NotContains(t, safeVerifyError(leaky).Error(), secret)
	require.NotContains(t, safeVerifyError(errors.Join(ErrInvalidToken, leaky)).Error(), secret)
	require.ErrorIs(t, safeVerifyError(errors.Join(ErrInvalidToken, leaky)), ErrInvalidToken)
	require.Equal(t, errExpired, safeVerifyError(errExpired))
}

// FuzzVerify feeds arbitrary input to the token parser: it must never panic, and whatever it
// accepts must be a well-formed identity. Without -fuzz only the seed corpus runs.
func FuzzVerify(f *testing.F) {
	iss := newIssuer(f)
	good, err := iss.Issue("alice", time.Hour)
	require.NoError(f, err)
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	for _, seed := range []string{
		good, "", ".", "..", "...", "a.b.c", good + "x", parts[0] + "." + parts[1] + ".",
		b64([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".",
		b64([]byte(`{"alg":"HS256"}`)) + "." + b64([]byte(`{"sub":"x","exp":1e309}`)) + ".AAAA",
		b64([]byte(`{"alg":"HS256"`)) + "." + parts[1] + "." + parts[2],
		"\x00\xff.\x00.\x00", strings.Repeat(".", 100),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := iss.Verify(context.Background(), tok)
		if err != nil {
			// One of the issuer's fixed errors, so never the token or a part of it.
			if !slices.Contains(issuerErrors, err) {
				t.Fatalf("error %v is not one of the issuer's own", err)
			}
			if (id != Identity{}) {
				t.Fatalf("refused with an identity: %+v", id)
			}
			return
		}
		if id.Subject == "" || id.Expiry.IsZero() {
			t.Fatalf("accepted token without subject or expiry: %+v", id)
		}
		// Only the key's holder can make a token that verifies: anything accepted was built
		// from a seed minted here, and the key of another issuer refuses it.
		if _, err := newIssuer(t).Verify(context.Background(), tok); !errors.Is(err, errSignature) {
			t.Fatalf("another key accepted %q: %v", tok, err)
		}
	})
}

// issuerErrors are every error HMACIssuer.Verify returns.
var issuerErrors = []error{errMalformed, errAlgorithm, errSignature, errExpired, errNoSubject, errNoExpiry, errBadExpiry, errEmptyToken}

// FuzzIssueVerify: a minted token verifies to its subject and expiry, and changing any one
// character of it makes it invalid (tokens are not malleable: strict base64).
func FuzzIssueVerify(f *testing.F) {
	iss := newIssuer(f)
	for _, seed := range []struct {
		sub  string
		ttl  int64
		pos  uint
		with byte
	}{{"alice", 3600, 0, 'x'}, {"é\u0000\"", 61, 100, '.'}, {strings.Repeat("s", 300), 50 * 365 * 24 * 3600, 7, 'A'}, {"bob", 60, 1 << 20, '='}} {
		f.Add(seed.sub, seed.ttl, seed.pos, seed.with)
	}
	f.Fuzz(func(t *testing.T, sub string, ttlSecs int64, pos uint, with byte) {
		// At least a minute: the expiry is whole seconds, rounded down, and a token of one
		// second may expire before it is verified.
		if sub == "" || !utf8.ValidString(sub) || ttlSecs < 60 || ttlSecs > 100*365*24*3600 {
			return
		}
		tok, err := iss.Issue(sub, time.Duration(ttlSecs)*time.Second)
		if err != nil {
			return // an expiry past 9999
		}
		id, err := iss.Verify(context.Background(), tok)
		if err != nil || id.Subject != sub {
			t.Fatalf("%q verified as %+v, %v", sub, id, err)
		}
		i := int(pos % uint(len(tok)))
		if tok[i] == with {
			return
		}
		tampered := tok[:i] + string([]byte{with}) + tok[i+1:]
		if _, err := iss.Verify(context.Background(), tampered); err == nil {
			t.Fatalf("changing byte %d of %q to %q still verifies", i, tok, with)
		}
	})
}
