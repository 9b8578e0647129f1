"""What a person sees and types: the click commands (``cli``), event lines (``console``), the live
view (``progress``), tables and the summary (``tables``) and the HTML report (``report``). The only
package that imports click, rich and structlog."""
