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

{#
    Each priced genai-prices usage key with the SQL that counts it on one event of
    int_usage_events_in_scope. The canonical token columns keep their own names (cached input is
    genai-prices' cache_read_tokens, reasoning its output_reasoning_tokens), the detail keys come
    from usage_details, and a price per request counts each event once. A null count means the
    event does not say; pricing treats it as 0.
#}
{% macro usage_key_quantities(relation) -%}
    {% set quantities = {
        "input_tokens": relation ~ ".input_tokens",
        "cache_read_tokens": relation ~ ".cached_input_tokens",
        "cache_write_tokens": relation ~ ".cache_write_tokens",
        "output_tokens": relation ~ ".output_tokens",
        "output_reasoning_tokens": relation ~ ".reasoning_tokens",
        "requests": "1",
    } %}
    {% for usage_key in priced_usage_detail_keys() %}
        {% do quantities.update({usage_key: json_bigint(relation ~ ".usage_details", usage_key)}) %}
    {% endfor %}
    {{ return(quantities) }}
{%- endmacro %}
