import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

/**
 * A JDBC client as DBeaver or any JVM tool uses one, run by the tests against the SQL endpoint.
 *
 * <p>Usage: {@code java -cp 'JARS/*' JdbcQuery.java URL USER PASSWORD (query SQL | tables)}. Prints
 * one tab-separated line per row (the column labels first); on an SQLException prints
 * "SQLException: message" and exits 3.
 */
public class JdbcQuery {
  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.setProperty("user", args[1]);
    props.setProperty("password", args[2]);
    // As DBeaver does: instantiate the driver class and connect through it (under the source-file
    // launcher, DriverManager does not offer drivers from the class path to this class).
    try (Connection connection = new com.clickhouse.jdbc.Driver().connect(args[0], props)) {
      if (args[3].equals("tables")) {
        DatabaseMetaData meta = connection.getMetaData();
        try (ResultSet tables = meta.getTables(null, null, "%", new String[] {"TABLE"})) {
          print(tables);
        }
      } else {
        try (Statement statement = connection.createStatement();
            ResultSet rows = statement.executeQuery(args[4])) {
          print(rows);
        }
      }
    } catch (SQLException e) {
      System.out.println("SQLException: " + e.getMessage());
      System.exit(3);
    }
  }

  private static void print(ResultSet rows) throws SQLException {
    int n = rows.getMetaData().getColumnCount();
    StringBuilder line = new StringBuilder();
    for (int i = 1; i <= n; i++) {
      line.append(i > 1 ? "\t" : "").append(rows.getMetaData().getColumnLabel(i));
    }
    System.out.println(line);
    while (rows.next()) {
      line.setLength(0);
      for (int i = 1; i <= n; i++) {
        line.append(i > 1 ? "\t" : "").append(rows.getString(i));
      }
      System.out.println(line);
    }
  }
}
