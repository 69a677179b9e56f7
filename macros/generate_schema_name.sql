{#
    Use the custom schema name as it is (raw, staging, marts), not prefixed with the target
    schema, so analysts and the dashboard find relations under plain names on every warehouse.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
