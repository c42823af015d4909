// Package interop runs the wsauth client library and the wsauth command
// against WebSocket servers that nobody on the wsauth team wrote:
//
//   - github.com/centrifugal/centrifuge, the server library under
//     Centrifugo, with JWTs verified by github.com/golang-jwt/jwt/v5;
//   - gqlgen's graphql-transport-ws transport
//     (github.com/99designs/gqlgen/graphql/handler/transport), with a
//     hand-written executable schema;
//   - a ticket server, a query-token server and a cookie server written in
//     the tests the way applications write them on net/http and
//     github.com/coder/websocket: no wsauth code and no auth_ok.
//
// It is a module of its own (with a replace directive to the repository's
// root) so that users of the SDK never inherit these dependencies. Every
// scenario runs twice: through the library (wsauth.New) and through
// `wsauth connect`, built once per test binary from this module, so that
// it is the repository's own code. The package has no code outside its
// tests; see README.md for the scenarios.
package interop
