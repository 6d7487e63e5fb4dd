# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
"""README's "Try it": writes its curl command and the output it shows, as written there.

    readme-try-it.py README DIR    -> DIR/request.sh, DIR/expected.json
"""
import re
import sys

text = open(sys.argv[1]).read()
section = text.split("\n### Try it\n", 1)[1].split("\n### ", 1)[0]
blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
(request,) = [b for lang, b in blocks if lang == "sh" and "curl" in b]
(expected,) = [b for lang, b in blocks if lang == "json"]
open(f"{sys.argv[2]}/request.sh", "w").write(request)
open(f"{sys.argv[2]}/expected.json", "w").write(expected)
