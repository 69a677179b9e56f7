{#
    genai-prices usage keys that events carry in `usage_details` (parts of the canonical token
    counts such as audio or image tokens, and counts such as web searches) and that some catalog
    price uses. A Python test checks this list against the exported price seed, so a catalog
    upgrade that prices a new key fails the tests until the key is added here.
#}
{% macro priced_usage_detail_keys() -%}
    {{ return([
        "audio_seconds",
        "cache_audio_read_tokens",
        "cache_image_read_tokens",
        "cache_write_1h_tokens",
        "input_annotated_document_pages",
        "input_audio_seconds",
        "input_audio_tokens",
        "input_characters",
        "input_document_pages",
        "input_image_tokens",
        "input_text_messages",
        "input_video_tokens",
        "output_audio_tokens",
        "output_citation_tokens",
        "output_image_tokens",
        "output_video_tokens",
        "storage_searches",
        "web_searches",
    ]) }}
{%- endmacro %}
