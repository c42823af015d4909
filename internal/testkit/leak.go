package testkit

import "strings"

// Leaked returns the first of secrets that out still contains outside the
// placeholders a redactor wrote, "" when there is none: the fuzz targets'
// test for "no output contains a registered secret". Placeholders are masked
// first, so that a secret that is part of the placeholder ("DACT") or that a
// placeholder happens to border is not taken for a leak. Empty secrets and
// secrets that contain NUL (the mask) are not checked.
func Leaked(out, placeholder string, secrets ...string) string {
	masked := out
	if placeholder != "" {
		masked = strings.ReplaceAll(out, placeholder, "\x00")
	}
	for _, s := range secrets {
		if s != "" && !strings.Contains(s, "\x00") && strings.Contains(masked, s) {
			return s
		}
	}
	return ""
}
