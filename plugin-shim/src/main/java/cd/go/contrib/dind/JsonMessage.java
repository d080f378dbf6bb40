package cd.go.contrib.dind;

/**
 * The one JSON shape the shim writes itself: {@code {"message": "..."}}, the same error
 * shape the service uses (docs/protocol.md, "Service HTTP contract"). Everything else passes through untouched,
 * so no JSON library is needed.
 */
final class JsonMessage {
    private JsonMessage() {}

    static String of(String message) {
        StringBuilder out = new StringBuilder(message.length() + 16).append("{\"message\":\"");
        for (int i = 0; i < message.length(); i++) {
            char c = message.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append("\"}").toString();
    }
}
